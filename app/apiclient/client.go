// Package apiclient is the HTTP client of the CLI commands that talk to a
// running plivo-dlr server (send, backup, export, forward): one Client that
// authenticates with an API token, turns the server's {"error": ...}
// refusals into errors with a hint of what to do, and knows each endpoint's
// request and answer shape. It imports storage only to verify a downloaded
// backup.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"

	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"plivo-dlr/app/forward"
	"plivo-dlr/storage"
)

// sendTimeout bounds POST /api/messages: the server waits up to 15 s for
// Plivo, plus a margin for the server itself.
const sendTimeout = 30 * time.Second

// maxAnswer bounds an answer read into memory (every one but a download).
const maxAnswer = 1 << 20

// Client talks to one running server. It is safe for concurrent use.
type Client struct {
	base  string // server URL without a trailing slash
	token string
	http  *http.Client
}

// New returns a client of the server at serverURL ("http://127.0.0.1:8080")
// authenticating with token ("" sends none). It refuses a URL without
// scheme or host before a Go URL parse error does it less clearly
// ("127.0.0.1:8080" is a common spelling).
func New(serverURL, token string) (*Client, error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q: must be a URL like http://127.0.0.1:8080 or https://dlr.example.com", serverURL)
	}
	return &Client{
		base:  strings.TrimRight(serverURL, "/"),
		token: token,
		// Downloads have no overall timeout (a backup of a large store
		// takes a while); a server that does not answer at all is caught by
		// the header timeout.
		http: &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			ResponseHeaderTimeout: 30 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
		}},
	}, nil
}

// do sends method path (with an optional JSON body) and returns the
// response when its status is want; otherwise an error carrying the
// server's reason. The caller closes the body.
func (c *Client) do(ctx context.Context, method, path string, body any, want int) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, connectError(c.base+strings.SplitN(path, "?", 2)[0], err)
	}
	if resp.StatusCode == want {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return nil, fmt.Errorf("server answered %d: %s%s", resp.StatusCode, e.Error, statusHint(resp.StatusCode))
	}
	return nil, fmt.Errorf("server answered %s%s", resp.Status, statusHint(resp.StatusCode))
}

// decode reads a JSON answer of at most maxAnswer bytes into out.
func decode(resp *http.Response, what string, out any) error {
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(out); err != nil {
		return fmt.Errorf("decode %s: %w", what, err)
	}
	return nil
}

// SendRequest is the body of POST /api/messages: To is a list of E.164
// numbers; From defaults to the server's plivo.source_number.
type SendRequest struct {
	To        []string `json:"to"`
	Text      string   `json:"text"`
	MediaURLs []string `json:"media_urls,omitempty"`
	From      string   `json:"from,omitempty"`
}

// SendResponse is the 202 answer of POST /api/messages.
type SendResponse struct {
	MessageUUIDs []string `json:"message_uuids"`
	APIID        string   `json:"api_id"`
}

// Send sends a message through the server's POST /api/messages. A refusal
// is an error carrying the server's reason.
func (c *Client) Send(ctx context.Context, req SendRequest) (SendResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	resp, err := c.do(ctx, http.MethodPost, "/api/messages", req, http.StatusAccepted)
	if err != nil {
		return SendResponse{}, err
	}
	var out SendResponse
	if err := decode(resp, "answer", &out); err != nil {
		return SendResponse{}, err
	}
	return out, nil
}

// BackupResult describes a backup written by Backup.
type BackupResult struct {
	Path  string
	Bytes int64
	Info  storage.BackupInfo
}

// Backup downloads a snapshot from the server's GET /api/backup into path:
// it writes path.tmp, fsyncs it, checks it opens as a plivo-dlr store, then
// renames it into place, so path is either the old file or a complete
// verified backup, never a partial one.
func (c *Client) Backup(ctx context.Context, path string) (BackupResult, error) {
	res := BackupResult{Path: path}
	resp, err := c.do(ctx, http.MethodGet, "/api/backup", nil, http.StatusOK)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()

	err = storage.WriteFileAtomic(path, func(w io.Writer) error {
		var err error
		if res.Bytes, err = io.Copy(w, resp.Body); err != nil {
			return fmt.Errorf("download backup: %w", err)
		}
		if resp.ContentLength >= 0 && res.Bytes != resp.ContentLength {
			return fmt.Errorf("download backup: got %d bytes, want %d", res.Bytes, resp.ContentLength)
		}
		return nil
	}, func(tmp string) error {
		var err error
		res.Info, err = storage.VerifyBackup(tmp)
		return err
	})
	if err != nil {
		return res, err
	}
	return res, nil
}

// Export streams the server's GET /api/export?query to w and returns the
// bytes copied.
func (c *Client) Export(ctx context.Context, query url.Values, w io.Writer) (int64, error) {
	resp, err := c.do(ctx, http.MethodGet, "/api/export?"+query.Encode(), nil, http.StatusOK)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("download export: %w", err)
	}
	return n, nil
}

// ForwardStatus fetches GET /api/forward: the state of every sink.
func (c *Client) ForwardStatus(ctx context.Context) ([]forward.SinkStatus, error) {
	resp, err := c.do(ctx, http.MethodGet, "/api/forward", nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var out struct {
		Sinks []forward.SinkStatus `json:"sinks"`
	}
	if err := decode(resp, "forwarding status", &out); err != nil {
		return nil, err
	}
	return out.Sinks, nil
}

// ForwardRetry asks the server to retry sink name's dead letters and
// returns its status message.
func (c *Client) ForwardRetry(ctx context.Context, name string) (string, error) {
	return c.forwardPost(ctx, "/api/forward/"+url.PathEscape(name)+"/retry")
}

// ForwardReplay asks the server to replay sink name's events after cursor
// since (a number, or what the server accepts for it) and returns its
// status message.
func (c *Client) ForwardReplay(ctx context.Context, name, since string) (string, error) {
	return c.forwardPost(ctx, "/api/forward/"+url.PathEscape(name)+"/replay?since="+url.QueryEscape(since))
}

func (c *Client) forwardPost(ctx context.Context, path string) (string, error) {
	resp, err := c.do(ctx, http.MethodPost, path, nil, http.StatusAccepted)
	if err != nil {
		return "", err
	}
	var out struct {
		Status string `json:"status"`
	}
	if err := decode(resp, "answer", &out); err != nil {
		return "", err
	}
	return out.Status, nil
}
