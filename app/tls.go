package app

import (
	"crypto/x509"
	"log/slog"
	"os"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"plivo-dlr/app/certs"
)

// hstsValue asks browsers to use HTTPS only for a year. No includeSubDomains:
// other hosts under the same domain are not ours to decide for.
const hstsValue = "max-age=31536000"

// NewTLS builds the certificate manager for cfg's [tls] section (mode "acme"
// or "files") and registers the certificate expiry metric on reg. It does
// not touch the network: Start does. A tls.acme_ca_root that cannot be read
// is a *ConfigError.
func NewTLS(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*certs.Manager, error) {
	opts, err := tlsOptions(cfg, logger, reg)
	if err != nil {
		return nil, err
	}
	return certs.New(opts)
}

// tlsOptions maps the configuration onto certs.Options.
func tlsOptions(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (certs.Options, error) {
	opts := certs.Options{
		Mode: cfg.TLS.Mode, Domains: cfg.TLS.Domains, Email: cfg.TLS.Email, ACMECA: cfg.TLS.ACMECA,
		CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, HTTPListen: cfg.TLS.HTTPListen,
		Listen: cfg.Server.Listen, PublicURL: cfg.Server.PublicURL, DataDir: cfg.Server.DataDir,
		Logger: logger, Registerer: reg,
	}
	if path := cfg.TLS.ACMECARoot; path != "" && cfg.TLS.Mode == "acme" {
		pem, err := os.ReadFile(path)
		if err != nil {
			return opts, &ConfigError{Key: "tls.acme_ca_root", Problem: err.Error()}
		}
		opts.ACMERoots = x509.NewCertPool()
		if !opts.ACMERoots.AppendCertsFromPEM(pem) {
			return opts, &ConfigError{Key: "tls.acme_ca_root", Problem: "no PEM certificate in " + path}
		}
	}
	return opts, nil
}

// hsts marks HTTPS responses so browsers never downgrade the dashboard to
// plain HTTP.
func hsts(c *fiber.Ctx) error {
	c.Set(fiber.HeaderStrictTransportSecurity, hstsValue)
	return c.Next()
}
