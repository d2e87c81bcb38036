// Package protocol is Plivo's delivery-status callback protocol as plain
// values: signature verification and diagnosis (V2 and V3), turning a
// callback's parameters into a storage.Event, Plivo's timestamp format and
// its SMS error-code table. It does no I/O and knows nothing of HTTP
// servers: the caller hands it the method, URL, headers and body it
// received, so it is tested and fuzzed without a listener.
package protocol
