package auth

import (
	"fmt"
	"strings"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// Public is the policy role of methods that need no credentials.
const Public = "public"

// Policy maps gRPC full method names ("/pkg.Service/Method") to the role a caller
// needs; "/pkg.Service/*" covers every method of a service that has no entry of its
// own, and the role Public needs no credentials. A method the policy does not name is
// denied to everyone.
type Policy map[string]string

// DefaultPolicy is recserve's policy: RecommendService and reading the catalog
// need RoleRecommend, EventService RoleIngest, changing the catalog RoleCatalog,
// ModelAdminService, UserService (erasure) and server reflection RoleAdmin, and
// grpc.health.v1 is public.
func DefaultPolicy() Policy {
	return Policy{
		recservev1.RecommendService_Recommend_FullMethodName:              RoleRecommend,
		recservev1.RecommendService_SimilarItems_FullMethodName:           RoleRecommend,
		recservev1.RecommendService_BatchRecommend_FullMethodName:         RoleRecommend,
		recservev1.EventService_RecordEvents_FullMethodName:               RoleIngest,
		recservev1.CatalogService_GetItem_FullMethodName:                  RoleRecommend,
		"/" + recservev1.CatalogService_ServiceDesc.ServiceName + "/*":    RoleCatalog,
		"/" + recservev1.UserService_ServiceDesc.ServiceName + "/*":       RoleAdmin,
		"/" + recservev1.ModelAdminService_ServiceDesc.ServiceName + "/*": RoleAdmin,
		"/grpc.health.v1.Health/*":                                        Public,
		"/grpc.reflection.v1.ServerReflection/*":                          RoleAdmin,
		"/grpc.reflection.v1alpha.ServerReflection/*":                     RoleAdmin,
	}
}

// Role returns the role fullMethod needs and whether the policy names the method.
func (p Policy) Role(fullMethod string) (string, bool) {
	if role, ok := p[fullMethod]; ok {
		return role, true
	}
	i := strings.LastIndexByte(fullMethod, '/')
	if i <= 0 {
		return "", false
	}
	role, ok := p[fullMethod[:i]+"/*"]
	return role, ok
}

// Validate checks that every entry is "/service/method" or "/service/*" with a
// non-empty role.
func (p Policy) Validate() error {
	if len(p) == 0 {
		return fmt.Errorf("auth: empty policy")
	}
	for m, role := range p {
		svc, method, ok := strings.Cut(strings.TrimPrefix(m, "/"), "/")
		if !strings.HasPrefix(m, "/") || !ok || svc == "" || method == "" || strings.Contains(method, "/") {
			return fmt.Errorf("auth: policy entry %q: want \"/package.Service/Method\" or \"/package.Service/*\"", m)
		}
		if strings.Contains(method, "*") && method != "*" {
			return fmt.Errorf("auth: policy entry %q: only a whole method may be \"*\"", m)
		}
		if strings.TrimSpace(role) == "" {
			return fmt.Errorf("auth: policy entry %q: empty role (use auth.Public for no authentication)", m)
		}
	}
	return nil
}
