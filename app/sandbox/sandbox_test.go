package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSandboxFailureShare: the allocation is exact over every block of 100.
func TestSandboxFailureShare(t *testing.T) {
	for _, share := range []float64{0, 0.1, 0.37, 1} {
		t.Run(fmt.Sprint(share), func(t *testing.T) {
			sb := &Sandbox{opts: Options{FailureShare: share}, rng: newTestRand()}
			fails := 0
			for i := range 3 * allocBlock {
				// Some messages are doomed by their numbers: they take a
				// failure slot from later in the block, keeping the share.
				if sb.nextOutcomeLocked(i%allocBlock < 3 && share > 0) == outcomeFail {
					fails++
				}
			}
			if want := 3 * int(share*allocBlock+0.5); fails != want {
				t.Errorf("failures in 300: got %d, want %d", fails, want)
			}
		})
	}
}

func newTestRand() *mrand.Rand { return mrand.New(mrand.NewPCG(1, 2)) }

// TestSandboxWorld (issue 11): the simulated world should look like
// Plivo's. Every callback's MCC is its destination country's (MCC/MNC one
// real network per number, the same on every message to it); a number that
// fails for a reason of its own (invalid destination, unreachable, STOP)
// fails with the same code every time, and never for a reason that would
// contradict another message ("invalid source number" while the same source
// delivers others): code 40 comes only from a source that cannot send at
// all, and then on every message.
func TestSandboxWorld(t *testing.T) {
	type cb struct{ uuid, from, to, status, code, mcc, mnc, rate string }
	var mu sync.Mutex
	final := map[string]cb{}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Errorf("callback form: %v", err)
		}
		f := r.PostForm
		c := cb{f.Get("MessageUUID"), f.Get("From"), f.Get("To"), f.Get("Status"), f.Get("ErrorCode"), f.Get("MCC"), f.Get("MNC"), f.Get("TotalRate")}
		if c.status == "delivered" || c.status == "undelivered" || c.status == "failed" {
			mu.Lock()
			final[c.uuid] = c
			mu.Unlock()
		}
	}))
	defer recv.Close()
	sb, err := Start(Options{FailureShare: 0.3, Step: time.Millisecond, Chaos: -1, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()

	wantMCC := map[string][]string{"1": {"310", "311"}, "44": {"234"}, "49": {"262"}, "91": {"404"}, "61": {"505"}, "33": {"208"}}
	var dsts []string
	for i := range 15 {
		dsts = append(dsts, fmt.Sprintf("+1415555%04d", i), fmt.Sprintf("+44770090%04d", i), fmt.Sprintf("+49151234%04d", i),
			fmt.Sprintf("+9198765%05d", i), fmt.Sprintf("+6141234%04d", i), fmt.Sprintf("+3361234%04d", i))
	}
	send := func(src string, to []string) int {
		body, _ := json.Marshal(map[string]any{"src": src, "dst": strings.Join(to, "<"), "text": "hi", "url": recv.URL})
		req, _ := http.NewRequest(http.MethodPost, sb.URL()+"v1/Account/"+sb.AuthID()+"/Message/", bytes.NewReader(body))
		req.SetBasicAuth(sb.AuthID(), sb.AuthToken())
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("create: got %d, want 202", resp.StatusCode)
		}
		return len(to)
	}
	n := 0
	for range 4 { // every destination four times
		n += send(SourceNumber, dsts)
	}
	n += send("12", dsts[:10]) // not a number, short code or sender ID
	n += send("ACME Corp", dsts[:10])

	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := len(final)
		mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("final callbacks: got %d of %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}

	permanent := map[string]bool{"50": true, "70": true, "90": true, "100": true, "200": true, "40": true}
	byPair := map[string][]cb{}
	network := map[string]string{}
	fails := 0
	for _, c := range final {
		byPair[c.from+">"+c.to] = append(byPair[c.from+">"+c.to], c)
		if c.status != "delivered" {
			fails++
		}
		if c.from == "12" {
			if c.status != "failed" || c.code != "40" || c.mcc != "" {
				t.Errorf("invalid source: got %+v, want failed 40 without MCC", c)
			}
			continue
		}
		if c.code == "40" {
			t.Errorf("source %s: got code 40 (invalid source) though it sends: %+v", c.from, c)
		}
		if c.code == "50" {
			if c.mcc != "" || c.rate != "0.00000" {
				t.Errorf("invalid destination: got %+v, want no MCC/MNC and no charge", c)
			}
			continue
		}
		d := strings.TrimPrefix(c.to, "+")
		var ok bool
		for cc, mccs := range wantMCC {
			if strings.HasPrefix(d, cc) {
				for _, m := range mccs {
					ok = ok || c.mcc == m
				}
			}
		}
		if !ok || c.mnc == "" {
			t.Errorf("%s: got MCC/MNC %s/%s, want a network of its country", c.to, c.mcc, c.mnc)
		}
		if prev, seen := network[c.to]; seen && prev != c.mcc+"/"+c.mnc {
			t.Errorf("%s: MCC/MNC %s/%s on one message, %s on another", c.to, c.mcc, c.mnc, prev)
		}
		network[c.to] = c.mcc + "/" + c.mnc
	}
	dead := 0
	for pair, cs := range byPair {
		for _, c := range cs {
			if permanent[c.code] && c.code != "40" {
				dead++
				for _, o := range cs {
					if o.code != c.code {
						t.Errorf("%s: code %s (%s) on one message, %q (%s) on another", pair, c.code, c.status, o.code, o.status)
					}
				}
				break
			}
		}
	}
	if dead == 0 {
		t.Errorf("no destination failed for a reason of its own among %d pairs: the test checks nothing", len(byPair))
	}
	// Three full blocks of 100 hold 90 failures; doomed numbers only add.
	if fails < 90 || fails > 200 {
		t.Errorf("failures: got %d of %d, want about 30%%", fails, n)
	}
}
