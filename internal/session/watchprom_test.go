package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWatchPrometheus: watch --listen beside our bench client against the
// threads server, scraped by a real Prometheus (Debian's package) with
// the bearer token; its HTTP API answers a quantile of a component's
// histogram. /metrics refuses a request without the token.
func TestWatchPrometheus(t *testing.T) {
	requireRoot(t)
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed (apt-get install prometheus; .ci/run installs it)")
	}
	port := startBuiltin(t, "threads")
	dir := t.TempDir()
	token := "t0ken-" + strconv.Itoa(os.Getpid())
	tokenFile := filepath.Join(dir, "token")
	writeFile(t, tokenFile, token+"\n")
	listen := fmt.Sprintf("127.0.0.1:%d", unusedPort(t))
	promAddr := fmt.Sprintf("127.0.0.1:%d", unusedPort(t))
	writeFile(t, filepath.Join(dir, "prometheus.yml"), fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: volleyscope
    authorization:
      credentials_file: %s
    static_configs:
      - targets: [%q]
`, tokenFile, listen))
	prom := exec.Command(promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr)
	var promOut strings.Builder
	prom.Stdout, prom.Stderr = &promOut, &promOut
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prom.Process.Kill(); prom.Wait() })

	bench := startBench(t, port, "--clients", "1", "--duration", "12s", "--warmup", "100ms", "--ci", "0", "--p99-ci", "0", "-q").cmd

	type result struct {
		err   error
		lines []string
	}
	done := make(chan result, 1)
	var notes []string
	go func() {
		_, err := Watch(context.Background(), WatchConfig{ServerPort: port, ClientPIDs: []int{bench.Process.Pid}, Duration: 10 * time.Second,
			Listen: listen, ListenToken: token, Refresh: 2 * time.Second}, Callbacks{Note: func(s string) { notes = append(notes, s) }})
		done <- result{err, notes}
	}()

	// Unauthorized scrapes get nothing; the token gets the metrics.
	get := func(auth string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+listen+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var code int
	for i := 0; i < 100; i++ {
		if code, _ = get(""); code != 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: status %d, want 401", code)
	}
	if code, _ := get("Bearer wrong"); code != http.StatusUnauthorized {
		t.Errorf("/metrics with a wrong token: status %d, want 401", code)
	}

	// The metrics with the token, once the watch's first refresh is in.
	code, text := 0, ""
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if code, text = get("Bearer " + token); code == http.StatusOK && strings.Contains(text, MetricComponent+"_bucket") {
			break
		}
	}
	if code != http.StatusOK || !strings.Contains(text, MetricComponent+"_bucket") || !strings.Contains(text, MetricRequests) {
		t.Errorf("/metrics with the token: status %d, body lacks %s:\n%.2000s", code, MetricComponent, text)
	}

	// Prometheus's answer for client_wakeup's median over its scrapes.
	// Once the watch has ended, the query is evaluated at its end, where
	// the scrapes are: a Prometheus slowed by other work on the machine
	// (its storage waits on the disk) may answer after that.
	q := `histogram_quantile(0.5, sum by (le) (rate(` + MetricComponent + `_bucket{component="client_wakeup"}[4s])))`
	var answer string
	var r result
	var ended time.Time
	for deadline := time.Now().Add(30 * time.Second); answer == "" && time.Now().Before(deadline); {
		select {
		case r = <-done:
			ended = time.Now()
			done <- r
		case <-time.After(250 * time.Millisecond):
		}
		at := time.Now()
		if !ended.IsZero() {
			at = ended
		}
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q) + fmt.Sprintf("&time=%.3f", float64(at.UnixMilli())/1e3))
		if err != nil {
			continue
		}
		var body struct {
			Status string
			Data   struct {
				Result []struct {
					Value []any
				}
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err == nil && body.Status == "success" && len(body.Data.Result) == 1 && len(body.Data.Result[0].Value) == 2 {
			if v, ok := body.Data.Result[0].Value[1].(string); ok && v != "NaN" {
				answer = v
			}
		}
	}
	r = <-done
	if r.err != nil && !errors.Is(r.err, ErrLostEvents) { // lost events: other load on the machine; the metrics still count
		t.Fatalf("watch: %v", r.err)
	}
	if answer == "" {
		t.Fatalf("Prometheus never answered %s\n%s", q, promOut.String())
	}
	v, err := strconv.ParseFloat(answer, 64)
	if err != nil || v <= 0 || v > 1 {
		t.Errorf("Prometheus answered %q for %s: want a time in seconds", answer, q)
	}
	t.Logf("Prometheus: %s = %s s", q, answer)
	var summaries int
	for _, n := range r.lines {
		if strings.Contains(n, "round trips/s") {
			summaries++
			t.Log(n)
		}
	}
	if summaries == 0 {
		t.Errorf("no summary line among the notes: %q", r.lines)
	}
}
