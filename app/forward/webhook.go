package forward

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// SecretPrefix starts every Standard Webhooks secret.
const SecretPrefix = "whsec_"

// ParseSecret decodes a "whsec_<base64>" secret into its key bytes.
func ParseSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), SecretPrefix)
	if !ok {
		return nil, errors.New("secret must start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("secret after whsec_ must be base64")
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("secret must hold at least 16 bytes (got %d)", len(key))
	}
	return key, nil
}

// ReadSecretsFile reads secrets one a line (blank lines and # comments skipped).
func ReadSecretsFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	return out, nil
}

// Sign returns the webhook-signature header value: "v1,<base64 HMAC-SHA256
// of id.timestamp.body>" for each key, space-separated.
func Sign(keys [][]byte, id string, ts int64, body []byte) string {
	var sb strings.Builder
	for i, k := range keys {
		mac := hmac.New(sha256.New, k)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(strconv.FormatInt(ts, 10)))
		mac.Write([]byte{'.'})
		mac.Write(body)
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString("v1,")
		sb.WriteString(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return sb.String()
}

// WebhookOptions configure a Webhook sink.
type WebhookOptions struct {
	URL string
	// Secrets are whsec_ secrets; every one signs each delivery (rotation).
	Secrets []string
	// Timeout bounds one attempt (default 10s).
	Timeout time.Duration
	// CAFile, if set, is a PEM bundle trusted instead of the system roots.
	CAFile string
	// Now is the clock of webhook-timestamp; nil means time.Now.
	Now func() time.Time
}

// Webhook delivers to a Standard Webhooks endpoint.
type Webhook struct {
	url     string
	keys    [][]byte
	timeout time.Duration
	client  *http.Client
	now     func() time.Time
}

// responseLimit bounds the response body read (for the error message and
// so the connection can be reused); the rest is discarded unread.
const responseLimit = 4 << 10

// NewWebhook checks the options and builds the sink.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	w := &Webhook{url: o.URL, timeout: o.Timeout, now: o.Now}
	if w.timeout <= 0 {
		w.timeout = 10 * time.Second
	}
	if w.now == nil {
		w.now = time.Now
	}
	if len(o.Secrets) == 0 {
		return nil, errors.New("webhook needs at least one secret")
	}
	for _, s := range o.Secrets {
		k, err := ParseSecret(s)
		if err != nil {
			return nil, err
		}
		w.keys = append(w.keys, k)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", o.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	w.client = &http.Client{
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			TLSClientConfig:     tlsCfg,
			TLSHandshakeTimeout: w.timeout,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		},
		// A redirect is not a delivery: the 3xx is reported and retried, and
		// the signed body never goes to a host the operator did not name.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return w, nil
}

// Deliver posts one event; a 2xx answer is a delivery.
func (w *Webhook) Deliver(ctx context.Context, d *Delivery) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(d.Body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	ts := w.now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "plivo-dlr")
	req.Header.Set("webhook-id", d.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", Sign(w.keys, d.ID, ts, d.Body))
	resp, err := w.client.Do(req)
	if err != nil {
		var ue interface{ Timeout() bool }
		if errors.As(err, &ue) && ue.Timeout() {
			return fmt.Errorf("no answer within %s", w.timeout)
		}
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, responseLimit))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return fmt.Errorf("answered %s: %s", resp.Status, excerpt(head, 120))
}

// excerpt is a printable prefix of a response body, for the error only.
func excerpt(b []byte, n int) string {
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, string(b))
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = s[:n] + "…"
	}
	return strconv.Quote(s)
}

// Close releases idle connections.
func (w *Webhook) Close() error {
	w.client.CloseIdleConnections()
	return nil
}
