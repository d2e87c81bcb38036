package certs

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestSlogCore(t *testing.T) {
	var buf bytes.Buffer
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})
	zl := zap.New(newSlogCore(h)).Named("maintenance").With(zap.String("component", "tls"))
	zl.Debug("hidden detail")
	zl.Warn("renewing certificate", zap.Strings("identifiers", []string{"dlr.test"}), zap.Error(errors.New("boom")))
	got := buf.String()
	for _, want := range []string{"level=WARN", `msg="renewing certificate"`, "logger=maintenance", "component=tls", "err=boom", "identifiers=[dlr.test]"} {
		if !strings.Contains(got, want) {
			t.Errorf("log line: got %q, want it to contain %q", got, want)
		}
	}
	if strings.Contains(got, "hidden detail") {
		t.Errorf("log: got %q, want the debug line filtered out at info level", got)
	}
}
