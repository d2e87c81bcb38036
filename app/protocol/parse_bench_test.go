package protocol

import (
	"net/url"
	"testing"
)

// BenchmarkCallbackCPU measures the per-callback protocol work on the hot
// path (parse the form, verify the V2 signature, build the event as the
// callback path does, telling reports from inbound messages), without
// HTTP or storage:
//
//	go test -run '^$' -bench BenchmarkCallbackCPU -benchmem ./app/protocol
func BenchmarkCallbackCPU(b *testing.B) {
	const callbackURL = "https://hooks.example.com/plivo/callback"
	body := []byte(url.Values{
		"MessageUUID": {"0c7e1a42-2f61-11ef-a3d5-0242ac120003"}, "Status": {"delivered"}, "Sequence": {"3"},
		"To": {"447700900123"}, "From": {"14155550100"}, "Type": {"sms"},
		"Units": {"1"}, "TotalRate": {"0.00450"}, "TotalAmount": {"0.00450"},
		"MCC": {"234"}, "MNC": {"10"}, "ParentMessageUUID": {"0c7e1a42-2f61-11ef-a3d5-0242ac120003"},
		"ErrorCode": {""}, "PartInfo": {""}, "PowerpackUUID": {""},
		"MessageTime": {"2024-05-01 10:00:00.123456"}, "QueuedTime": {"2024-05-01 10:00:00.234567"},
		"SentTime": {"2024-05-01 10:00:01.345678"}, "DeliveryReportTime": {"2024-05-01 10:00:04.456789"},
	}.Encode())
	sig, err := ComputeSignatureV2(benchToken, callbackURL, "12345678901234567890")
	if err != nil {
		b.Fatal(err)
	}
	v := NewSignatureVerifier(benchToken)
	b.ReportAllocs()
	for b.Loop() {
		params, err := CallbackParams("POST", "application/x-www-form-urlencoded", body, "")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := v.Verify(SignedRequest{Method: "POST", URL: callbackURL, Params: params,
			Headers: SignatureHeaders{V2: sig, V2Nonce: "12345678901234567890"}}); err != nil {
			b.Fatal(err)
		}
		if _, err := ParsePosted(params); err != nil { // what the callback path calls
			b.Fatal(err)
		}
	}
}

// benchToken is a Plivo-shaped auth token (40 base64 characters).
const benchToken = "MzY2ZjQxZTg5NjFiY2I2NWE1OTJkNWFlNzBiZjE4"
