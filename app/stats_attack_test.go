package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/google/uuid"

	"plivo-dlr/app/protocol"
)

// TestStatsAttackBounded replays issue 9's stats attack through HTTP with
// validly signed callbacks: unique 20 KB ErrorCodes (DB 1.68 GB, 691 ms a
// callback before) are refused with a 400 naming the field, and what fits
// the limits (unique 8-byte codes, distinct unknown statuses) is stored
// with its raw values while the hourly stats count it as "other".
func TestStatsAttackBounded(t *testing.T) {
	env := startMetricsServer(t, "", nil, nil)
	newUUID := func() string { u, _ := uuid.NewUUID(); return u.String() }

	for i := range 20 {
		f := url.Values{"MessageUUID": {newUUID()}, "Status": {"failed"}, "ErrorCode": {fmt.Sprintf("%020480d", i)}}
		if code := env.callback(t, f, ""); code != http.StatusBadRequest {
			t.Fatalf("20 KB ErrorCode: got %d, want 400", code)
		}
	}
	code, body := postSigned(t, env, url.Values{"MessageUUID": {newUUID()}, "Status": {"failed"}, "ErrorCode": {strings.Repeat("7", 9)}})
	if code != http.StatusBadRequest || !strings.Contains(body, "ErrorCode longer than 8 bytes") {
		t.Errorf("9-byte ErrorCode: got %d %q, want 400 naming ErrorCode", code, body)
	}

	const n = 300
	var lastStatus, lastStatusUUID string
	for i := range n {
		env.mustCallback(t, http.StatusOK, url.Values{"MessageUUID": {newUUID()}, "Status": {"failed"}, "ErrorCode": {fmt.Sprintf("9%07d", i)}}, "")
		lastStatus, lastStatusUUID = fmt.Sprintf("weird_%d", i), newUUID()
		env.mustCallback(t, http.StatusOK, url.Values{"MessageUUID": {lastStatusUUID}, "Status": {lastStatus}}, "")
	}
	// The raw values stay in the message and its events.
	_, body2 := get(t, env.url, "/api/messages/"+lastStatusUUID, string(metricsTestAPI))
	if !strings.Contains(string(body2), `"status":"`+lastStatus+`"`) {
		t.Errorf("message %s: got %s, want status %q kept", lastStatusUUID, body2, lastStatus)
	}

	code, sb := get(t, env.url, "/api/stats?window=24h", string(metricsTestAPI))
	if code != http.StatusOK {
		t.Fatalf("stats: got %d %s", code, sb)
	}
	var st struct {
		Counts        map[string]int64 `json:"counts"`
		TopErrorCodes []struct {
			Code  string `json:"code"`
			Count int64  `json:"count"`
		} `json:"top_error_codes"`
	}
	if err := json.Unmarshal(sb, &st); err != nil {
		t.Fatalf("stats %s: %v", sb, err)
	}
	if len(st.Counts) != 2 || st.Counts["failed"] != n || st.Counts["other"] != n {
		t.Errorf("counts: got %v, want failed %d and other %d only", st.Counts, n, n)
	}
	if len(st.TopErrorCodes) == 0 || st.TopErrorCodes[0].Code != "other" || st.TopErrorCodes[0].Count != n-63 {
		t.Errorf("top error codes: got %+v, want other first with %d (63 codes keep a counter)", st.TopErrorCodes, n-63)
	}
	// bbolt grows its file in 16 MiB steps; the unbounded record needed
	// 1.68 GB for 2,701 codes. (storage's TestStatsRecordBounded measures
	// the record itself.)
	if fi, err := os.Stat(env.store.Path()); err != nil || fi.Size() > 32<<20 {
		t.Errorf("database size after the attack: %v (%v), want at most 32 MiB", fi.Size(), err)
	}
}

// postSigned posts a V2-signed callback and returns the status and body.
func postSigned(t *testing.T, env *metricsEnv, f url.Values) (int, string) {
	t.Helper()
	nonce := fmt.Sprintf("%020d", 1<<40+env.nonce.Add(1))
	u := env.url + "/plivo/callback"
	sig, err := protocol.ComputeSignatureV2(metricsTestToken, u, nonce)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(f.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(protocol.HeaderSignatureV2, sig)
	req.Header.Set(protocol.HeaderSignatureV2Nonce, nonce)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
