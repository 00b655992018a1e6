// Package deploy holds recserve's deployment files — the container image
// (Dockerfile), docker-compose.yaml, the Helm chart (helm/recserve), the Grafana
// dashboard, the Prometheus alerts and the metrics contract (METRICS.md) — and the
// tests that check them offline: go test ./deploy/ renders the chart and decodes
// every object strictly into the Kubernetes API types, and cross-checks the compose
// file, the image, the dashboard and the alerts against each other and against
// the recserve command's flags.
package deploy
