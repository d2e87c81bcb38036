package app

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serveForLoadEnv names the server a child process of
// BenchmarkIngestProcesses runs: bare, minimal or product.
const serveForLoadEnv = "PLIVO_DLR_SERVE_FOR_LOAD"

// BenchmarkIngestProcesses is BenchmarkIngest with each server in its own
// process, as a deployment runs (and as issue 12's review measured): the
// load generator's goroutines, heap and garbage collections are no longer
// the server's. The three servers are this test binary run again
// (BenchmarkServeForLoad), all started before the first round; the rounds
// interleave as in BenchmarkIngest, figures are medians over rounds:
//
//	BENCH_ROUNDS=5 go test -run '^$' -bench BenchmarkIngestProcesses -benchtime 15000x ./app
func BenchmarkIngestProcesses(b *testing.B) {
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv("BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	for _, tc := range []struct {
		shape   string
		clients int
	}{{"v1x3", 64}, {"v1x3", 256}, {"v4x1", 64}} {
		b.Run(fmt.Sprintf("shape=%s/clients=%d", tc.shape, tc.clients), func(b *testing.B) {
			var servers []*ingestServer
			for _, kind := range []string{"bare", "minimal", "product"} {
				servers = append(servers, &ingestServer{name: kind, addr: startServerProcess(b, os.Args[0], kind)})
			}
			product := servers[2]
			// PLIVO_DLR_BENCH_BASELINE=path/to/app.test[,another.test...]
			// adds the product built from other code (go test -c of another
			// commit) as further servers: before/after in one run, reported
			// as product/baseline (product/baseline2, ... for the others).
			if bins := os.Getenv("PLIVO_DLR_BENCH_BASELINE"); bins != "" {
				for i, bin := range strings.Split(bins, ",") {
					name := "baseline"
					if i > 0 {
						name += strconv.Itoa(i + 1)
					}
					servers = append(servers, &ingestServer{name: name, addr: startServerProcess(b, bin, "product")})
				}
			}
			runIngestRounds(b, tc.shape, tc.clients, rounds, servers, product, false)
		})
	}
}

// startServerProcess runs a test binary of this package (normally this one)
// as a server of the given kind and
// returns its address; the server runs until its stdin closes (cleanup).
func startServerProcess(b *testing.B, binary, kind string) string {
	b.Helper()
	cmd := exec.Command(binary, "-test.run=^$", "-test.bench=^BenchmarkServeForLoad$", "-test.benchtime=1x")
	cmd.Env = append(os.Environ(), serveForLoadEnv+"="+kind)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				addr <- a
			}
		}
		close(addr)
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			b.Fatalf("%s server process ended without an address", kind)
		}
		return a
	case <-time.After(time.Minute):
		b.Fatalf("%s server process gave no address within a minute", kind)
		return ""
	}
}

// BenchmarkServeForLoad is the server side of BenchmarkIngestProcesses, run
// in a child process; run directly, it has nothing to measure.
func BenchmarkServeForLoad(b *testing.B) {
	kind := os.Getenv(serveForLoadEnv)
	var addr string
	switch kind {
	case "":
		b.Skip("the server process of BenchmarkIngestProcesses")
	case "bare":
		addr = startBareServer(b)
	case "minimal":
		addr = startMinimalServer(b)
	case "product":
		TuneGC(os.Getenv) // as serve does
		addr, _ = startBenchServer(b, nil)
	default:
		b.Fatalf("%s=%q: want bare, minimal or product", serveForLoadEnv, kind)
	}
	// PLIVO_DLR_SERVE_CPUPROFILE=prefix profiles each server process for
	// the whole benchmark, into prefix.bare, prefix.minimal, prefix.product
	// (where the CPU per callback goes).
	if prefix := os.Getenv("PLIVO_DLR_SERVE_CPUPROFILE"); prefix != "" {
		f, err := os.Create(prefix + "." + kind)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	// PLIVO_DLR_SERVE_TRACE=prefix writes an execution trace the same way.
	if prefix := os.Getenv("PLIVO_DLR_SERVE_TRACE"); prefix != "" {
		f, err := os.Create(prefix + "." + kind)
		if err != nil {
			b.Fatal(err)
		}
		if err := trace.Start(f); err != nil {
			b.Fatal(err)
		}
		defer func() {
			trace.Stop()
			_ = f.Close()
		}()
	}
	fmt.Printf("ADDR %s\n", addr)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent is done
}
