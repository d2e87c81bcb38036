package app

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Placeholders lists the keys still holding an example value from the
// shipped configs (example.com names, the MAXXX... Auth ID), one line each
// naming the key. check-config prints them as warnings: the config is valid,
// but Plivo cannot reach dlr.example.com and no account is MAXXXXXXXXXXXXXXXXXX.
func (c *Config) Placeholders() []string {
	var out []string
	example := func(host string) bool {
		host = strings.ToLower(strings.TrimSuffix(host, "."))
		for _, d := range []string{"example.com", "example.net", "example.org"} {
			if host == d || strings.HasSuffix(host, "."+d) {
				return true
			}
		}
		return false
	}
	if u, err := url.Parse(c.Server.PublicURL); err == nil && example(u.Hostname()) {
		out = append(out, fmt.Sprintf("server.public_url: %q is the example; write the URL Plivo calls", c.Server.PublicURL))
	}
	for _, d := range c.TLS.Domains {
		if example(d) {
			out = append(out, fmt.Sprintf("tls.domains: %q is the example; write this machine's DNS name", d))
		}
	}
	if _, domain, ok := strings.Cut(c.TLS.Email, "@"); ok && example(domain) {
		out = append(out, fmt.Sprintf("tls.email: %q is the example; Let's Encrypt writes to it about expiring certificates", c.TLS.Email))
	}
	if id := c.Plivo.AuthID; len(id) > 2 && strings.Trim(id[2:], "X") == "" {
		out = append(out, fmt.Sprintf("plivo.auth_id: %q is the example; copy the Auth ID from the Plivo console", id))
	}
	if host, _, err := net.SplitHostPort(c.Metrics.Listen); err == nil && example(host) {
		out = append(out, fmt.Sprintf("metrics.listen: %q is the example", c.Metrics.Listen))
	}
	return out
}
