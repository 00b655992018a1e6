package daemon

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/recserve/recserve/registry"
	"github.com/recserve/recserve/sampledata"
)

// TestS3Registry runs two server replicas on one registry in object storage
// (an in-process S3 server): both serve what the trainer publishes there.
func TestS3Registry(t *testing.T) {
	mem := s3mem.New()
	if err := mem.CreateBucket("models"); err != nil {
		t.Fatal(err)
	}
	s3 := httptest.NewServer(gofakes3.New(mem).Server())
	defer s3.Close()
	t.Setenv(registry.EnvS3Endpoint, s3.URL)
	t.Setenv(registry.EnvS3PathStyle, "true")
	t.Setenv(registry.EnvAccessKey, "recserve")
	t.Setenv(registry.EnvSecretKey, "secret")
	const location = "s3://models/prod"

	reg, err := registry.OpenURL(context.Background(), location)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	data := sampledata.Generate(sampledata.Options{Users: 300, Items: 240, Seed: 3})
	publishSample(t, reg, data, 1)

	useS3 := func(c *Config) { c.Registry = location }
	replicas := []Addrs{}
	for range 2 {
		a, _ := startDaemon(t, useS3)
		replicas = append(replicas, a)
	}
	user := data.Events[0].UserID
	version := func(a Addrs) string {
		var rec restItems
		getJSON(t, "http://"+a.HTTP+"/v1/users/"+user+"/recommendations?n=5", &rec)
		if len(rec.Items) != 5 {
			t.Fatalf("replica %s: %d items", a.HTTP, len(rec.Items))
		}
		return rec.ModelVersion
	}
	for _, a := range replicas {
		if v := version(a); v != "1" {
			t.Fatalf("replica %s serves version %q, want 1", a.HTTP, v)
		}
	}

	v2 := publishSample(t, reg, data, 2)
	for _, a := range replicas {
		deadline := time.Now().Add(10 * time.Second)
		for version(a) != v2 {
			if time.Now().After(deadline) {
				t.Fatalf("replica %s did not pick up version %s from S3", a.HTTP, v2)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
