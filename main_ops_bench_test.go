package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// procMemKB reads the given fields (VmHWM, VmRSS, RssAnon, RssFile) of
// /proc/PID/status, in kB.
func procMemKB(pid int, fields ...string) (map[string]int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		for _, want := range fields {
			if name == want {
				kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
				if err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				out[name] = kb
			}
		}
	}
	return out, sc.Err()
}

// memSampler polls a process's memory every 10 ms and keeps the peaks.
type memSampler struct {
	mu   sync.Mutex
	peak map[string]int
	stop chan struct{}
	done chan struct{}
}

func sampleMem(pid int) *memSampler {
	m := &memSampler{peak: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if cur, err := procMemKB(pid, "VmHWM", "VmRSS", "RssAnon", "RssFile"); err == nil {
				m.mu.Lock()
				for k, v := range cur {
					m.peak[k] = max(m.peak[k], v)
				}
				m.mu.Unlock()
			}
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memSampler) finish() map[string]int {
	close(m.stop)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peak
}

// BenchmarkExportLargeStore starts the real binary on a store of many
// messages (100,000; 1,000,000 with PLIVO_DLR_BENCH_LARGE=1), exports them
// all as NDJSON through GET /api/export b.N times, and reports the export
// rate and the server's peak memory sampled from /proc during the exports:
// RssAnon (heap and stacks, what streaming keeps flat; must stay under
// 100 MB), RssFile (pages of the bbolt file mapped in, page cache the
// kernel can drop) and VmHWM (their peak sum).
//
//	PLIVO_DLR_BENCH_LARGE=1 go test -run '^$' -bench BenchmarkExportLargeStore -benchtime 1x .
func BenchmarkExportLargeStore(b *testing.B) {
	n := 100_000
	if os.Getenv("PLIVO_DLR_BENCH_LARGE") == "1" {
		n = 1_000_000
	}
	dataDir := b.TempDir()
	start := time.Now()
	fillStore(b, filepath.Join(dataDir, "plivo-dlr.db"), n)
	fi, err := os.Stat(filepath.Join(dataDir, "plivo-dlr.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("filled %d messages (%d MB) in %s", n, fi.Size()>>20, time.Since(start).Round(time.Second))

	p := startBinary(b, writeConfig(b, dataDir))
	pid := p.cmd.Process.Pid
	before, err := procMemKB(pid, "VmHWM", "RssAnon")
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{}
	var bytesRead int64
	mem := sampleMem(pid)
	b.ResetTimer()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+"/api/export?format=ndjson", nil)
		req.Header.Set("Authorization", "Bearer "+testAPIToken)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		lines := 0
		br := bufio.NewReaderSize(resp.Body, 64<<10)
		for {
			line, err := br.ReadSlice('\n')
			bytesRead += int64(len(line))
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatalf("read export: %v", err)
			}
			lines++
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || lines != n {
			b.Fatalf("export: status %d, %d lines, want 200 and %d", resp.StatusCode, lines, n)
		}
	}
	b.StopTimer()
	peak := mem.finish()
	elapsed := b.Elapsed().Seconds()
	b.ReportMetric(float64(n)*float64(b.N)/elapsed, "messages/s")
	b.ReportMetric(float64(bytesRead)/elapsed/(1<<20), "MB/s")
	b.ReportMetric(float64(peak["RssAnon"])/1024, "peak_RssAnon_MB")
	b.ReportMetric(float64(peak["RssFile"])/1024, "peak_RssFile_MB")
	b.ReportMetric(float64(peak["VmHWM"])/1024, "VmHWM_MB")
	b.Logf("before the export: VmHWM %d MB, RssAnon %d MB; store file %d MB", before["VmHWM"]>>10, before["RssAnon"]>>10, fi.Size()>>20)
	if peak["RssAnon"] > 100<<10 {
		b.Errorf("peak RssAnon %d MB during the export, want under 100 MB", peak["RssAnon"]>>10)
	}
}
