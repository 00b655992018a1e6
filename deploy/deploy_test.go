package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// decodeYAMLStrict decodes YAML into out, failing on duplicate keys and on fields
// out does not have.
func decodeYAMLStrict(data []byte, out any) error {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	return decodeJSONStrict(js, out)
}

// decodeJSONStrict decodes as the Kubernetes API server does: field names match
// case-sensitively, and unknown and duplicate fields are errors.
func decodeJSONStrict(data []byte, out any) error {
	strict, err := sigsjson.UnmarshalStrict(data, out, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// commandFlags returns, per command of cmd/recserve, the flags it registers: the
// "commands" map says which function runs a command, and the flags of a function
// are the fs.XxxVar/fs.Func/fs.Xxx calls in it and in the functions and methods
// it calls (the flag set is named fs throughout cmd/recserve).
func commandFlags(t *testing.T) map[string]map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	paths, err := filepath.Glob(filepath.Join("..", "cmd", "recserve", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	funcs := map[string]*ast.FuncDecl{}
	commands := map[string]string{}
	for _, f := range files {
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				// Methods by name alone: cmd/recserve is small enough for that.
				funcs[d.Name.Name] = d
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					vs, ok := spec.(*ast.ValueSpec)
					if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "commands" || len(vs.Values) != 1 {
						continue
					}
					lit, ok := vs.Values[0].(*ast.CompositeLit)
					if !ok {
						continue
					}
					for _, elt := range lit.Elts {
						kv := elt.(*ast.KeyValueExpr)
						key, _ := strconv.Unquote(kv.Key.(*ast.BasicLit).Value)
						if id, ok := kv.Value.(*ast.Ident); ok {
							commands[key] = id.Name
						}
					}
				}
			}
		}
	}
	if len(commands) == 0 {
		t.Fatal("no commands map in cmd/recserve")
	}
	flagsOf := func(root string) map[string]bool {
		flags := map[string]bool{}
		seen := map[string]bool{}
		var visit func(name string)
		visit = func(name string) {
			fn := funcs[name]
			if fn == nil || seen[name] {
				return
			}
			seen[name] = true
			ast.Inspect(fn, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				switch fun := call.Fun.(type) {
				case *ast.Ident:
					visit(fun.Name)
				case *ast.SelectorExpr:
					if x, ok := fun.X.(*ast.Ident); !ok || x.Name != "fs" {
						visit(fun.Sel.Name) // a method such as clientFlags.register
					} else {
						for _, arg := range call.Args {
							if lit, ok := arg.(*ast.BasicLit); ok && lit.Kind == token.STRING {
								s, _ := strconv.Unquote(lit.Value)
								flags[s] = true
								break
							}
						}
					}
				}
				for _, arg := range call.Args {
					if id, ok := arg.(*ast.Ident); ok {
						visit(id.Name) // functions passed as values
					}
				}
				return true
			})
		}
		visit(root)
		return flags
	}
	out := map[string]map[string]bool{}
	for cmd, fn := range commands {
		out[cmd] = flagsOf(fn)
	}
	return out
}

// checkArgs checks that args (recserve's arguments: the command, then flags) name a
// command of cmd/recserve and only flags it has, except those in pending (flags
// the deployment passes ahead of their implementation). A command that does not
// exist yet is skipped with a log line when it is in pendingCommands.
func checkArgs(t *testing.T, flags map[string]map[string]bool, args []string, pending, pendingCommands []string) {
	t.Helper()
	if len(args) == 0 {
		t.Fatal("no command")
	}
	cmd := args[0]
	known, ok := flags[cmd]
	if !ok {
		if slices.Contains(pendingCommands, cmd) {
			t.Logf("recserve %s is not implemented yet; its flags are not checked", cmd)
			return
		}
		t.Fatalf("recserve has no command %q", cmd)
	}
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name := strings.TrimLeft(a, "-")
		name, _, _ = strings.Cut(name, "=")
		if !known[name] && !slices.Contains(pending, name) {
			t.Errorf("recserve %s has no flag -%s (args %q)", cmd, name, args)
		}
	}
}

// flagValue returns the value of -name in args, as "-name v" or "-name=v".
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "-"+name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, "-"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func TestCommandFlagsParser(t *testing.T) {
	flags := commandFlags(t)
	for _, want := range []string{"registry", "grpc-addr", "http-addr", "redis", "kafka", "topic", "index", "poll", "cache-ttl", "shutdown-timeout"} {
		if !flags["serve"][want] {
			t.Errorf("serve flags %v lack %q", flags["serve"], want)
		}
	}
	if !flags["recommend"]["user"] || !flags["recommend"]["addr"] {
		t.Errorf("recommend flags: %v", flags["recommend"])
	}
}

type dockerfile struct {
	stages []dockerStage
	args   map[string]string // ARGs before the first FROM
}

type dockerStage struct {
	from  string
	lines []string // instructions after FROM, continuation lines joined
}

func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	df := dockerfile{args: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, path)))
	var cur string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur == "") {
			continue
		}
		if rest, ok := strings.CutSuffix(line, "\\"); ok {
			cur += rest + " "
			continue
		}
		line, cur = cur+line, ""
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			df.stages = append(df.stages, dockerStage{from: rest})
		case "ARG":
			if len(df.stages) == 0 {
				k, v, _ := strings.Cut(rest, "=")
				df.args[k] = v
				continue
			}
			fallthrough
		default:
			if len(df.stages) == 0 {
				t.Fatalf("%s: %q before FROM", path, line)
			}
			s := &df.stages[len(df.stages)-1]
			s.lines = append(s.lines, line)
		}
	}
	return df
}

func TestDockerfile(t *testing.T) {
	df := parseDockerfile(t, "Dockerfile")
	if len(df.stages) != 2 {
		t.Fatalf("want a build stage and a runtime stage, got %d stages", len(df.stages))
	}
	// The builder's Go matches go.mod.
	gomod := string(readFile(t, filepath.Join("..", "go.mod")))
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if m == nil {
		t.Fatal("no go directive in go.mod")
	}
	if got := df.args["GO_VERSION"]; got != m[1] {
		t.Errorf("ARG GO_VERSION=%s, go.mod says go %s", got, m[1])
	}
	if !strings.HasPrefix(df.stages[0].from, "golang:${GO_VERSION}") {
		t.Errorf("build stage FROM %s", df.stages[0].from)
	}
	build := strings.Join(df.stages[0].lines, "\n")
	for _, want := range []string{"CGO_ENABLED=0", "go build", "./cmd/recserve"} {
		if !strings.Contains(build, want) {
			t.Errorf("build stage lacks %q", want)
		}
	}

	runtime := df.stages[1]
	if !strings.HasPrefix(runtime.from, "gcr.io/distroless/static") || !strings.HasSuffix(runtime.from, ":nonroot") {
		t.Errorf("runtime stage FROM %s, want distroless static nonroot", runtime.from)
	}
	var user, entrypoint string
	var exposed []string
	for _, l := range runtime.lines {
		instr, rest, _ := strings.Cut(l, " ")
		switch instr {
		case "USER":
			user = rest
		case "ENTRYPOINT":
			entrypoint = rest
		case "EXPOSE":
			exposed = strings.Fields(rest)
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric non-root uid (Kubernetes runAsNonRoot checks it)", user)
	}
	if uid != "65532" {
		t.Errorf("USER %s, but the chart's podSecurityContext and the compose volume assume 65532", user)
	}
	if entrypoint != `["/usr/local/bin/recserve"]` {
		t.Errorf("ENTRYPOINT %s", entrypoint)
	}
	if !slices.Equal(exposed, []string{"9090", "8080"}) {
		t.Errorf("EXPOSE %v", exposed)
	}
}

// compose is the part of the Compose specification deploy/docker-compose.yaml uses;
// anything else in the file fails the strict decode.
type compose struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
	Volumes  map[string]*struct{}      `json:"volumes"`
}

type composeService struct {
	Image string `json:"image"`
	Build *struct {
		Context    string `json:"context"`
		Dockerfile string `json:"dockerfile"`
	} `json:"build"`
	Command     []string          `json:"command"`
	Environment map[string]string `json:"environment"`
	Ports       []string          `json:"ports"`
	Volumes     []string          `json:"volumes"`
	DependsOn   map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	Healthcheck *struct {
		Test        []string `json:"test"`
		Interval    string   `json:"interval"`
		Timeout     string   `json:"timeout"`
		Retries     int      `json:"retries"`
		StartPeriod string   `json:"start_period"`
	} `json:"healthcheck"`
	Restart string `json:"restart"`
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	js, err := yaml.YAMLToJSONStrict(readFile(t, "docker-compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Top-level x- keys are Compose extensions (YAML anchors to merge).
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil {
		t.Fatal(err)
	}
	for k := range top {
		if strings.HasPrefix(k, "x-") {
			delete(top, k)
		}
	}
	js, _ = json.Marshal(top)
	var c compose
	if err := decodeJSONStrict(js, &c); err != nil {
		t.Fatalf("docker-compose.yaml: %v", err)
	}
	return c
}

func TestCompose(t *testing.T) {
	c := loadCompose(t)
	var names []string
	for name := range c.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	if want := []string{"grafana", "kafka", "prometheus", "redis", "server", "trainer"}; !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}

	hostPorts := map[string]string{}
	for name, s := range c.Services {
		if s.Image == "" {
			t.Errorf("%s: no image", name)
		}
		if s.Restart == "" {
			t.Errorf("%s: no restart policy", name)
		}
		for dep, d := range s.DependsOn {
			target, ok := c.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s depends on unknown service %s", name, dep)
			case d.Condition == "service_healthy" && target.Healthcheck == nil:
				t.Errorf("%s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
			case !slices.Contains([]string{"service_started", "service_healthy", "service_completed_successfully"}, d.Condition):
				t.Errorf("%s: depends_on %s: condition %q", name, dep, d.Condition)
			}
		}
		for _, p := range s.Ports {
			host, _, ok := strings.Cut(p, ":")
			if !ok {
				t.Errorf("%s: port %q: want HOST:CONTAINER", name, p)
			}
			if other, dup := hostPorts[host]; dup {
				t.Errorf("host port %s published by %s and %s", host, other, name)
			}
			hostPorts[host] = name
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s mounts undeclared volume %s", name, src)
			}
		}
		if s.Build != nil {
			ctx := filepath.Clean(s.Build.Context)
			if _, err := os.Stat(filepath.Join(ctx, "go.mod")); err != nil {
				t.Errorf("%s: build context %s is not the module root: %v", name, s.Build.Context, err)
			}
			if _, err := os.Stat(filepath.Join(ctx, s.Build.Dockerfile)); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}

	flags := commandFlags(t)
	server, trainer := c.Services["server"], c.Services["trainer"]
	checkArgs(t, flags, server.Command, nil, nil)
	checkArgs(t, flags, trainer.Command, nil, []string{"trainer"})
	if server.Command[0] != "serve" || trainer.Command[0] != "trainer" {
		t.Fatalf("server runs %v, trainer runs %v", server.Command, trainer.Command)
	}
	if _, tls := flagValue(server.Command, "tls-cert"); tls == slices.Contains(server.Command, "-plaintext") {
		t.Errorf("server %v: want exactly one of -tls-cert and -plaintext", server.Command)
	}
	if server.Image != trainer.Image {
		t.Errorf("server image %s, trainer image %s: one binary, one image", server.Image, trainer.Image)
	}

	// The registry: one named volume, mounted by both, with -registry inside it.
	mountOf := func(s composeService, path string) string {
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && (path == parts[1] || strings.HasPrefix(path, parts[1]+"/")) {
				return parts[0]
			}
		}
		return ""
	}
	reg, _ := flagValue(server.Command, "registry")
	treg, _ := flagValue(trainer.Command, "registry")
	if reg == "" || reg != treg {
		t.Fatalf("server -registry %q, trainer -registry %q", reg, treg)
	}
	if sv, tv := mountOf(server, reg), mountOf(trainer, reg); sv == "" || sv != tv || strings.HasPrefix(sv, ".") {
		t.Errorf("registry %s: server mounts %q, trainer mounts %q; want one named volume", reg, sv, tv)
	}

	// The trainer's event log (its training set) outlives the container, apart from the registry.
	logDir, _ := flagValue(trainer.Command, "log-dir")
	if v := mountOf(trainer, logDir); logDir == "" || v == "" || strings.HasPrefix(v, ".") || v == mountOf(trainer, reg) {
		t.Errorf("trainer -log-dir %q on volume %q: want a named volume of its own", logDir, v)
	}

	// Kafka: what the server and trainer dial is what the broker advertises.
	brokers, _ := flagValue(server.Command, "kafka")
	tbrokers, _ := flagValue(trainer.Command, "brokers")
	if brokers == "" || brokers != tbrokers {
		t.Errorf("server -kafka %q, trainer -brokers %q", brokers, tbrokers)
	}
	kafka := c.Services["kafka"]
	if adv := kafka.Environment["KAFKA_ADVERTISED_LISTENERS"]; !strings.Contains(adv, "//"+brokers) {
		t.Errorf("kafka advertises %q, clients dial %q", adv, brokers)
	}
	if !strings.Contains(kafka.Environment["KAFKA_PROCESS_ROLES"], "controller") {
		t.Error("kafka is not in KRaft mode (no controller role)")
	}
	for _, dep := range []struct{ service, addrFlag, dependency string }{
		{"server", "kafka", "kafka"}, {"server", "redis", "redis"}, {"trainer", "brokers", "kafka"},
	} {
		s := c.Services[dep.service]
		addr, _ := flagValue(s.Command, dep.addrFlag)
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host != dep.dependency {
			t.Errorf("%s -%s %q: want the %s service", dep.service, dep.addrFlag, addr, dep.dependency)
		}
		if s.DependsOn[dep.dependency].Condition != "service_healthy" {
			t.Errorf("%s does not wait for %s to be healthy", dep.service, dep.dependency)
		}
	}
	if addr, _ := flagValue(server.Command, "redis"); !strings.HasSuffix(addr, ":6379") {
		t.Errorf("server -redis %s: redis listens on 6379", addr)
	}

	// The server listens on all interfaces on the ports it publishes.
	published := map[string]bool{}
	for _, p := range server.Ports {
		_, container, _ := strings.Cut(p, ":")
		published[container] = true
	}
	for _, f := range []string{"grpc-addr", "http-addr"} {
		addr, _ := flagValue(server.Command, f)
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host != "0.0.0.0" || !published[port] {
			t.Errorf("server -%s %q: want 0.0.0.0 and a published port (published: %v)", f, addr, server.Ports)
		}
	}

	// Prometheus scrapes the server's HTTP port.
	var prom promConfig
	if err := decodeYAMLStrict(readFile(t, "prometheus/prometheus.yaml"), &prom); err != nil {
		t.Fatalf("prometheus.yaml: %v", err)
	}
	httpAddr, _ := flagValue(server.Command, "http-addr")
	_, httpPort, _ := net.SplitHostPort(httpAddr)
	var targets []string
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	if !slices.Contains(targets, "server:"+httpPort) {
		t.Errorf("prometheus scrapes %v, not server:%s", targets, httpPort)
	}
	promMounts := strings.Join(c.Services["prometheus"].Volumes, " ")
	for _, rf := range prom.RuleFiles {
		if !strings.Contains(promMounts, "/etc/prometheus/"+rf) {
			t.Errorf("rule file %s is not mounted into prometheus (%s)", rf, promMounts)
		}
	}
}

// promConfig is the part of the Prometheus configuration prometheus.yaml uses.
type promConfig struct {
	Global struct {
		ScrapeInterval     string `json:"scrape_interval"`
		EvaluationInterval string `json:"evaluation_interval"`
	} `json:"global"`
	RuleFiles     []string `json:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `json:"job_name"`
		MetricsPath   string `json:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `json:"targets"`
		} `json:"static_configs"`
	} `json:"scrape_configs"`
}

// TestConfigReference: README.md's configuration reference lists every flag of
// every command.
func TestConfigReference(t *testing.T) {
	readme := string(readFile(t, filepath.Join("..", "README.md")))
	_, ref, ok := strings.Cut(readme, "\n## Configuration reference\n")
	if !ok {
		t.Fatal("README.md has no Configuration reference section")
	}
	ref, _, _ = strings.Cut(ref, "\n## ")
	cmds := commandFlags(t)
	for cmd, flags := range cmds {
		for flag := range flags {
			if flag == "" {
				continue // a name computed at run time (tune's -grid-*)
			}
			if !strings.Contains(ref, "| `-"+flag+"` |") {
				t.Errorf("flag -%s of %s is not in README.md's configuration reference", flag, cmd)
			}
		}
	}
	if len(cmds["serve"]) < 20 || len(cmds["models"]) < 10 {
		t.Fatalf("found too few flags: %v", cmds)
	}
}
