package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// metric is one row of the METRICS.md contract.
type metric struct {
	name, kind string
	labels     []string
}

var metricRow = regexp.MustCompile("^\\| `(recserve_[a-z0-9_]+)` \\| (counter|gauge|histogram) \\| ([^|]*)\\|")

// loadContract parses the table of METRICS.md.
func loadContract(t *testing.T) map[string]metric {
	t.Helper()
	out := map[string]metric{}
	for _, line := range strings.Split(string(readFile(t, "METRICS.md")), "\n") {
		m := metricRow.FindStringSubmatch(line)
		if m == nil {
			if strings.HasPrefix(line, "| `") {
				t.Errorf("METRICS.md: malformed row %q", line)
			}
			continue
		}
		var labels []string
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				labels = append(labels, l)
			}
		}
		if _, dup := out[m[1]]; dup {
			t.Errorf("METRICS.md: %s twice", m[1])
		}
		out[m[1]] = metric{name: m[1], kind: m[2], labels: labels}
	}
	if len(out) == 0 {
		t.Fatal("METRICS.md: no metrics")
	}
	return out
}

func TestMetricsContract(t *testing.T) {
	c := loadContract(t)
	for name, m := range c {
		switch {
		case m.kind == "counter" && !strings.HasSuffix(name, "_total"):
			t.Errorf("counter %s does not end in _total", name)
		case m.kind != "counter" && strings.HasSuffix(name, "_total"):
			t.Errorf("%s %s ends in _total", m.kind, name)
		case m.kind == "histogram" && !strings.HasSuffix(name, "_seconds"):
			t.Errorf("histogram %s: want a _seconds unit", name)
		}
	}
	for _, want := range []string{
		"recserve_requests_total", "recserve_request_duration_seconds", "recserve_cache_hits_total",
		"recserve_cache_requests_total", "recserve_model_version_age_seconds", "recserve_consumer_lag",
		"recserve_events_ingested_total", "recserve_models_loaded",
	} {
		if _, ok := c[want]; !ok {
			t.Errorf("METRICS.md lacks %s", want)
		}
	}
	if got := c["recserve_requests_total"].labels; !slices.Equal(got, []string{"rpc", "code", "model", "version"}) {
		t.Errorf("recserve_requests_total labels %v", got)
	}
}

var (
	metricRef  = regexp.MustCompile(`\b(recserve_[a-z0-9_]+)(\{[^}]*\})?`)
	matcher    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"`)
	grouping   = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	targetLbls = []string{"job", "instance"}
)

// checkExpr checks a PromQL expression against the contract: brackets balance,
// every recserve_ metric is in it (a histogram through _bucket, _sum or _count),
// and selectors and groupings name only labels those metrics have. It returns the
// contract names the expression uses.
func checkExpr(t *testing.T, where, expr string, c map[string]metric) []string {
	t.Helper()
	if err := balanced(expr); err != nil {
		t.Errorf("%s: %v in %s", where, err, expr)
	}
	var used []string
	known := slices.Clone(targetLbls)
	for _, m := range metricRef.FindAllStringSubmatch(expr, -1) {
		name, suffix := m[1], ""
		if _, ok := c[name]; !ok {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, s); ok && c[base].kind == "histogram" {
					name, suffix = base, s
				}
			}
		}
		def, ok := c[name]
		if !ok {
			t.Errorf("%s: %s is not in METRICS.md", where, m[1])
			continue
		}
		if def.kind == "histogram" && suffix == "" {
			t.Errorf("%s: histogram %s used without _bucket, _sum or _count", where, name)
		}
		labels := append(slices.Clone(def.labels), targetLbls...)
		if suffix == "_bucket" {
			labels = append(labels, "le")
		}
		for _, lm := range matcher.FindAllStringSubmatch(m[2], -1) {
			if !slices.Contains(labels, lm[1]) {
				t.Errorf("%s: %s has no label %q (contract: %v)", where, name, lm[1], def.labels)
			}
		}
		known = append(known, labels...)
		used = append(used, name)
	}
	for _, g := range grouping.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !slices.Contains(known, l) {
				t.Errorf("%s: groups by %q, which none of its metrics has", where, l)
			}
		}
	}
	return used
}

func balanced(s string) error {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inString := false
	for _, r := range s {
		switch {
		case r == '"':
			inString = !inString
		case inString:
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return fmt.Errorf("unbalanced %q", r)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 || inString {
		return fmt.Errorf("unclosed %q", stack)
	}
	return nil
}

// ruleFile is the Prometheus rule file format.
type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval"`
		Rules    []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert         string            `json:"alert"`
	Record        string            `json:"record"`
	Expr          string            `json:"expr"`
	For           string            `json:"for"`
	KeepFiringFor string            `json:"keep_firing_for"`
	Labels        map[string]string `json:"labels"`
	Annotations   map[string]string `json:"annotations"`
}

func TestAlertRules(t *testing.T) {
	c := loadContract(t)
	var rf ruleFile
	if err := decodeYAMLStrict(readFile(t, "prometheus/alerts.yaml"), &rf); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	seen := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Record != "" {
				t.Errorf("group %s: rule %+v: want alerting rules only", g.Name, r)
				continue
			}
			if seen[r.Alert] {
				t.Errorf("alert %s twice", r.Alert)
			}
			seen[r.Alert] = true
			if r.For == "" {
				t.Errorf("%s: no for: a single bad scrape would page", r.Alert)
			}
			if s := r.Labels["severity"]; s != "page" && s != "warning" {
				t.Errorf("%s: severity %q", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: want summary and description annotations", r.Alert)
			}
			if len(checkExpr(t, r.Alert, r.Expr, c)) == 0 {
				t.Errorf("%s: uses no recserve metric", r.Alert)
			}
		}
	}
	for _, want := range []string{"RecserveHighErrorRate", "RecserveHighLatency", "RecserveNoModelLoaded", "RecserveConsumerLag", "RecserveModelVersionStale"} {
		if !seen[want] {
			t.Errorf("no alert %s", want)
		}
	}

	// Every alert has a promtool unit test.
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	js, err := yaml.YAMLToJSONStrict(readFile(t, "prometheus/alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &tests); err != nil { // only the alert names
		t.Fatal(err)
	}
	tested := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			tested[a.Alertname] = true
		}
	}
	for a := range seen {
		if !tested[a] {
			t.Errorf("alerts_test.yaml does not test %s", a)
		}
	}
}

// dashboard is the part of the Grafana dashboard model recserve.json uses.
type dashboard struct {
	UID           string   `json:"uid"`
	Title         string   `json:"title"`
	Description   string   `json:"description"`
	Tags          []string `json:"tags"`
	Editable      bool     `json:"editable"`
	GraphTooltip  int      `json:"graphTooltip"`
	SchemaVersion int      `json:"schemaVersion"`
	Version       int      `json:"version"`
	Refresh       string   `json:"refresh"`
	Time          struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"time"`
	Timezone    string `json:"timezone"`
	Annotations struct {
		List []any `json:"list"`
	} `json:"annotations"`
	Links      []any `json:"links"`
	Templating struct {
		List []struct {
			Name       string         `json:"name"`
			Label      string         `json:"label"`
			Type       string         `json:"type"`
			Datasource *datasource    `json:"datasource"`
			Query      any            `json:"query"`
			Definition string         `json:"definition"`
			Current    map[string]any `json:"current"`
			Hide       int            `json:"hide"`
			Refresh    int            `json:"refresh"`
			Options    []any          `json:"options"`
			IncludeAll bool           `json:"includeAll"`
			AllValue   string         `json:"allValue"`
			Multi      bool           `json:"multi"`
			Sort       int            `json:"sort"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Collapsed   bool        `json:"collapsed"`
	Datasource  *datasource `json:"datasource"`
	GridPos     struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	} `json:"gridPos"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		RefID        string      `json:"refId"`
		Datasource   *datasource `json:"datasource"`
		Expr         string      `json:"expr"`
		LegendFormat string      `json:"legendFormat"`
		Instant      bool        `json:"instant"`
		Range        bool        `json:"range"`
		Format       string      `json:"format"`
	} `json:"targets"`
	FieldConfig *struct {
		Defaults struct {
			Unit       string         `json:"unit"`
			Min        *float64       `json:"min"`
			Max        *float64       `json:"max"`
			Thresholds map[string]any `json:"thresholds"`
		} `json:"defaults"`
		Overrides []any `json:"overrides"`
	} `json:"fieldConfig"`
	Options map[string]any `json:"options"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := decodeJSONStrict(readFile(t, "grafana/recserve.json"), &d); err != nil {
		t.Fatalf("recserve.json: %v", err)
	}
	return d
}

// grafanaVars replaces the dashboard's variables with values PromQL accepts.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$job", ".*", "$model", ".*")

func TestDashboard(t *testing.T) {
	c := loadContract(t)
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, title %q, schemaVersion %d", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s: datasource %+v", v.Name, v.Datasource)
		}
	}
	if !vars["datasource"] || !vars["job"] || !vars["model"] {
		t.Errorf("variables %v: want datasource, job and model", vars)
	}

	ids := map[int]bool{}
	used := map[string]bool{}
	type cell struct{ x, y int }
	taken := map[cell]int{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24 columns", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Fatalf("panel %q overlaps panel %d at %d,%d", p.Title, other, x, y)
				}
				taken[cell{x, y}] = p.ID
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %+v, %d targets", p.Title, p.Datasource, len(p.Targets))
		}
		if p.FieldConfig == nil || p.FieldConfig.Defaults.Unit == "" {
			t.Errorf("panel %q: no unit", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.Contains(tg.Expr, "[5m]") || strings.Contains(tg.Expr, "[1m]") {
				t.Errorf("panel %q: fixed range in %s: use $__rate_interval", p.Title, tg.Expr)
			}
			for _, name := range checkExpr(t, fmt.Sprintf("panel %q", p.Title), grafanaVars.Replace(tg.Expr), c) {
				used[name] = true
			}
		}
	}
	for name := range c {
		if !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
	// The panels the issue asks for, by what they query.
	for _, want := range []string{
		"sum by (rpc) (rate(recserve_requests_total",
		`histogram_quantile(0.99, sum by (rpc, le)`,
		`histogram_quantile(0.5, sum by (rpc, le)`,
		`histogram_quantile(0.99, sum by (model, version, le)`,
		`histogram_quantile(0.5, sum by (model, version, le)`,
		"recserve_cache_hits_total", "recserve_consumer_lag", "recserve_events_ingested_total",
	} {
		found := false
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				found = found || strings.Contains(tg.Expr, want)
			}
		}
		if !found {
			t.Errorf("no panel queries %s", want)
		}
	}
}

// TestPromtool runs promtool on the rules, their unit tests, the compose
// Prometheus configuration and every dashboard query, when promtool is installed.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian: apt-get install prometheus)")
	}
	run := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("prometheus", "check", "rules", "alerts.yaml")
	run("prometheus", "test", "rules", "alerts_test.yaml")
	run("prometheus", "check", "config", "prometheus.yaml")

	// The dashboard's queries, as recording rules, go through the PromQL parser.
	d := loadDashboard(t)
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			n++
			fmt.Fprintf(&b, "      - record: dashboard:query%d\n        expr: %s\n", n, strconv.Quote(grafanaVars.Replace(tg.Expr)))
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run(dir, "check", "rules", "dashboard.yaml")
}

func TestGrafanaProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name      string `json:"name"`
			UID       string `json:"uid"`
			Type      string `json:"type"`
			Access    string `json:"access"`
			URL       string `json:"url"`
			IsDefault bool   `json:"isDefault"`
		} `json:"datasources"`
	}
	if err := decodeYAMLStrict(readFile(t, "grafana/provisioning/datasources/prometheus.yaml"), &ds); err != nil {
		t.Fatal(err)
	}
	c := loadCompose(t)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("datasources %+v", ds.Datasources)
	}
	if _, ok := c.Services["prometheus"]; !ok {
		t.Error("the datasource points at a prometheus service compose does not run")
	}
	var dp struct {
		APIVersion int `json:"apiVersion"`
		Providers  []struct {
			Name            string `json:"name"`
			Folder          string `json:"folder"`
			Type            string `json:"type"`
			DisableDeletion bool   `json:"disableDeletion"`
			Options         struct {
				Path string `json:"path"`
			} `json:"options"`
		} `json:"providers"`
	}
	if err := decodeYAMLStrict(readFile(t, "grafana/provisioning/dashboards/recserve.yaml"), &dp); err != nil {
		t.Fatal(err)
	}
	mounts := strings.Join(c.Services["grafana"].Volumes, " ")
	if len(dp.Providers) != 1 || !strings.Contains(mounts, "recserve.json:"+dp.Providers[0].Options.Path+"/") {
		t.Errorf("dashboard provider %+v, grafana mounts %s", dp.Providers, mounts)
	}
}
