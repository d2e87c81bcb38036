package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// In-process runs of the CLI see no process environment for the unknown
// PLIVO_DLR_* warning, so a variable set where the tests run (such as
// PLIVO_DLR_BENCH_LARGE) cannot change their output; tests that want one
// set environ themselves.
func init() { environ = func() []string { return nil } }

// check-config and serve: a config with several mistakes gets one line per
// problem and exit 2; a misspelt PLIVO_DLR_* variable is a warning naming
// the variable it was probably meant as (issue 11).
func TestConfigProblemsReported(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[server]\nlisen = \"127.0.0.1:8080\"\ndata_dri = \"x\"\n[sever]\nlisten = \"a\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	typed := filepath.Join(dir, "typed.toml")
	if err := os.WriteFile(typed, []byte("[server]\nlisten = 8080\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"unknown keys", bad, []string{
			"plivo-dlr: server.lisen: unknown key (did you mean server.listen?)",
			"server.data_dri: unknown key (did you mean server.data_dir?)",
			"sever: unknown section (did you mean server?)",
		}},
		{"type error", typed, []string{"plivo-dlr: server.listen: must be a string (got an integer)"}},
	} {
		for _, cmd := range []string{"check-config", "serve"} {
			t.Run(tc.name+" "+cmd, func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				code := run(context.Background(), []string{cmd, "-config", tc.file}, nil, &stdout, &stderr, noEnv)
				if code != exitUsage {
					t.Errorf("exit: got %d, want %d", code, exitUsage)
				}
				if got := strings.TrimSpace(stderr.String()); got != strings.Join(tc.want, "\n") {
					t.Errorf("stderr:\ngot\n%s\nwant\n%s", got, strings.Join(tc.want, "\n"))
				}
			})
		}
	}

	t.Run("misspelt variable", func(t *testing.T) {
		saved := environ
		t.Cleanup(func() { environ = saved })
		environ = func() []string {
			return []string{"PLIVO_DLR_SERVER_LISEN=127.0.0.1:9", "PLIVO_DLR_API_TOKEN=x", "PATH=/usr/bin"}
		}
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"check-config"}, nil, &stdout, &stderr, noEnv); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		want := "plivo-dlr: warning: PLIVO_DLR_SERVER_LISEN: environment variable matches no config key, ignored (did you mean PLIVO_DLR_SERVER_LISTEN?)\n"
		if got := stderr.String(); got != want {
			t.Errorf("stderr:\ngot  %q\nwant %q", got, want)
		}
	})
}
