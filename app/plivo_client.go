package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	plivo "github.com/plivo/plivo-go/v7"

	"plivo-dlr/app/protocol"
)

// errNotMessageUUID refuses a lookup of something that is not a UUID.
var errNotMessageUUID = errors.New("not a Plivo message UUID")

// plivoTimeout bounds one Plivo API call. plivo-go takes no context, so the
// HTTP client's timeout is the only bound; a send waits for it in the handler.
const plivoTimeout = 15 * time.Second

// plivoError is a non-2xx answer from Plivo's API.
type plivoError struct {
	// Status is the HTTP status Plivo answered with.
	Status int
	// Reason is Plivo's "error" field, or the start of the body when the
	// body is not Plivo's JSON error shape.
	Reason string
}

func (e *plivoError) Error() string {
	return fmt.Sprintf("plivo api: %d %s", e.Status, e.Reason)
}

// plivoClient sends and looks up messages through plivo-go, pointed at
// plivo.api_url. It is safe for concurrent use.
type plivoClient struct {
	c *plivo.Client
}

// newPlivoClient returns a client for the account authID/authToken at
// apiURL (Plivo's production API when empty). Only the scheme and host of
// apiURL are used: plivo-go builds the /v1/Account/... path itself. A nil
// httpClient gets a private one with a 15 s timeout.
func newPlivoClient(authID, authToken, apiURL string, httpClient *http.Client) (*plivoClient, error) {
	if authID == "" || authToken == "" {
		return nil, errors.New("new plivo client: auth id and token are required")
	}
	if apiURL == "" {
		apiURL = DefaultPlivoAPIURL
	}
	base, err := url.Parse(apiURL)
	if err != nil || base.Host == "" {
		return nil, fmt.Errorf("new plivo client: bad api url %q", apiURL)
	}
	if httpClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 16
		httpClient = &http.Client{Timeout: plivoTimeout, Transport: tr}
	} else {
		c := *httpClient
		httpClient = &c
	}
	// plivo-go turns a non-2xx answer into errors.New(body), dropping the
	// status (and an empty error body into success). Checking the status in
	// the transport keeps it, per request, without sharing state between
	// concurrent calls the way plivo-go's ResponseInterceptor would.
	next := httpClient.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	httpClient.Transport = statusTransport{next: next}

	// Passing our own credentials keeps plivo-go from reading
	// PLIVO_AUTH_ID/PLIVO_AUTH_TOKEN from the environment behind our back.
	c, err := plivo.NewClient(authID, authToken, &plivo.ClientOptions{HttpClient: httpClient})
	if err != nil {
		return nil, fmt.Errorf("new plivo client: %w", err)
	}
	// BaseUrl is per client, so each Server (and each test) has its own
	// target; no package variable of plivo-go is touched.
	c.BaseUrl = &url.URL{Scheme: base.Scheme, Host: base.Host, Path: "/"}
	return &plivoClient{c: c}, nil
}

// Send asks Plivo to send one message (several when params.Dst lists several
// numbers separated by "<") and returns Plivo's api_id and message UUIDs.
// A refusal is a *plivoError; anything else is a network failure.
func (p *plivoClient) Send(params plivo.MessageCreateParams) (apiID string, uuids []string, err error) {
	resp, err := p.c.Messages.Create(params)
	if err != nil {
		return "", nil, fmt.Errorf("create message: %w", err)
	}
	if len(resp.MessageUUID) == 0 {
		reason := resp.Error
		if reason == "" {
			reason = "no message_uuid in Plivo's answer"
		}
		return "", nil, fmt.Errorf("create message: %w", &plivoError{Status: http.StatusBadGateway, Reason: reason})
	}
	return resp.ApiID, resp.MessageUUID, nil
}

// Get looks up one message's current state at Plivo. uuid must be a UUID
// (protocol.IsMessageUUID): plivo-go pastes it into the request path
// unescaped, so "../../../../v1/Account/OTHER/Call/abc" would reach another
// API with the main account's credentials. It cannot be escaped on the way
// in either, as plivo-go sets it as the decoded path: refusing anything but
// hex digits and hyphens is what keeps the path to Message/{uuid}/.
func (p *plivoClient) Get(uuid string) (*plivo.Message, error) {
	if !protocol.IsMessageUUID(uuid) {
		return nil, fmt.Errorf("get message %s: %w", strconv.Quote(clip(uuid)), errNotMessageUUID)
	}
	m, err := p.c.Messages.Get(uuid)
	if err != nil {
		return nil, fmt.Errorf("get message %s: %w", uuid, err)
	}
	return m, nil
}

// statusTransport turns non-2xx answers into *plivoError.
type statusTransport struct{ next http.RoundTripper }

func (t statusTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// plivo-go reads the body to the end but never closes it, which
		// keeps the client's timeout goroutine alive until the timeout.
		resp.Body = &closeAtEOF{ReadCloser: resp.Body}
		return resp, nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	resp.Body.Close()
	return nil, &plivoError{Status: resp.StatusCode, Reason: plivoReason(resp.StatusCode, body)}
}

// closeAtEOF closes the body once it has been read to the end.
type closeAtEOF struct {
	io.ReadCloser
}

func (b *closeAtEOF) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.ReadCloser.Close()
	}
	return n, err
}

// plivoReason extracts Plivo's error text: {"api_id": ..., "error": "..."}
// for most errors; some carry an object or plain text instead.
func plivoReason(status int, body []byte) string {
	var e struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil {
		var s string
		switch {
		case json.Unmarshal(e.Error, &s) == nil && s != "":
			return s
		case len(e.Error) > 0 && string(e.Error) != "null":
			return shorten(string(e.Error), 300)
		case e.Message != "":
			return e.Message
		}
	}
	if s := strings.TrimSpace(string(body)); s != "" && !strings.HasPrefix(s, "<") {
		return shorten(s, 300)
	}
	return http.StatusText(status)
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// plivoFailure classifies an error from plivoClient for an API answer: the
// status to reply with and a reason safe to show.
func plivoFailure(err error) (int, string) {
	var pe *plivoError
	if errors.As(err, &pe) {
		lower := strings.ToLower(pe.Reason)
		switch {
		case pe.Status == http.StatusPaymentRequired || strings.Contains(lower, "insufficient"):
			return http.StatusPaymentRequired, "plivo: " + pe.Reason
		case pe.Status == http.StatusTooManyRequests:
			return http.StatusTooManyRequests, "plivo: rate limited: " + pe.Reason
		case pe.Status == http.StatusUnauthorized || pe.Status == http.StatusForbidden:
			// Our credentials, not the caller's request: a gateway problem
			// the operator fixes in the config, so not a 4xx to the caller.
			return http.StatusBadGateway, "plivo rejected our credentials (check plivo.auth_id and plivo.auth_token): " + pe.Reason
		case pe.Status >= 400 && pe.Status < 500:
			return http.StatusBadRequest, "plivo: " + pe.Reason
		default:
			return http.StatusBadGateway, fmt.Sprintf("plivo unavailable (%d): %s", pe.Status, pe.Reason)
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return http.StatusBadGateway, "plivo did not answer in time"
	}
	return http.StatusBadGateway, "cannot reach plivo api"
}
