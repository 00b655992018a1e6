package registry

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// Environment variables that configure an S3 registry opened by [OpenURL].
const (
	EnvS3Endpoint  = "RECSERVE_S3_ENDPOINT"   // default https://s3.<region>.amazonaws.com
	EnvS3PathStyle = "RECSERVE_S3_PATH_STYLE" // "true": <endpoint>/<bucket> addressing (MinIO and most non-AWS servers)
	EnvAccessKey   = "AWS_ACCESS_KEY_ID"      // with EnvSecretKey; both unset: anonymous
	EnvSecretKey   = "AWS_SECRET_ACCESS_KEY"
	EnvRegion      = "AWS_REGION" // default us-east-1
)

// OpenURL opens the registry at location: s3://<bucket>[/<prefix>] for object
// storage, configured by the environment variables above, or else a directory,
// created if missing. Close the result when done.
func OpenURL(ctx context.Context, location string) (Store, error) {
	rest, isS3 := strings.CutPrefix(location, "s3://")
	if !isS3 {
		return Open(location)
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	region := os.Getenv(EnvRegion)
	if region == "" {
		region = "us-east-1"
	}
	endpoint := os.Getenv(EnvS3Endpoint)
	if endpoint == "" {
		endpoint = fmt.Sprintf("https://s3.%s.amazonaws.com", region)
	}
	return OpenS3(ctx, S3Options{
		Endpoint: endpoint, Bucket: bucket, Prefix: prefix, Region: region,
		AccessKey: os.Getenv(EnvAccessKey), SecretKey: os.Getenv(EnvSecretKey),
		UsePathStyle: os.Getenv(EnvS3PathStyle) == "true",
	})
}
