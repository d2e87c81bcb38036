package app

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"plivo-dlr/app/protocol"
)

// TestCallbackRepeatedKeyNodeSignature (issue 11): a V3 signature made the
// way Plivo's Node and Python SDKs make it, over every value of a repeated
// key, was refused with 403 (plivo-go signs the first value only). It is
// stored now; the event keeps the first value, as documented.
func TestCallbackRepeatedKeyNodeSignature(t *testing.T) {
	env := startMetricsServer(t, "", nil, nil)
	const uuid = "0c7e1a42-2f61-11ef-a3d5-0242ac120009"
	body := "MessageUUID=" + uuid + "&Status=delivered&Tag=b&Tag=a"
	u := env.url + "/plivo/callback"
	// Node v3Security.js construct_post_url: base + '?' + keys sorted, each
	// key's values sorted, key+value; then '.' + nonce.
	for i, tc := range []struct {
		signed string
		want   int
	}{
		{u + "?MessageUUID" + uuid + "StatusdeliveredTagaTagb", http.StatusOK},
		{u + "?MessageUUID" + uuid + "StatusdeliveredTagbTaga", http.StatusForbidden}, // values unsorted: not what any SDK signs
	} {
		nonce := fmt.Sprintf("%020d", 31415926535+i)
		mac := hmac.New(sha256.New, []byte(metricsTestToken))
		mac.Write([]byte(tc.signed + "." + nonce))
		req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set(protocol.HeaderSignatureV3, base64.StdEncoding.EncodeToString(mac.Sum(nil)))
		req.Header.Set(protocol.HeaderSignatureV3Nonce, nonce)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Fatalf("signed %q: got %d %s, want %d", tc.signed, resp.StatusCode, b, tc.want)
		}
	}
	_, b := get(t, env.url, "/api/messages/"+uuid, string(metricsTestAPI))
	if !strings.Contains(string(b), `"Tag":"b"`) {
		t.Errorf("stored event: got %s, want payload Tag=b (the first value)", b)
	}
}
