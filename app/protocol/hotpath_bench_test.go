package protocol

import (
	"net/url"
	"testing"
)

// BenchmarkCallbackCPUPlivo is BenchmarkCallbackCPU with the headers Plivo
// actually sends: V2 and V3 signatures, each with its Ma- twin, and two
// random 20-digit nonces; V3 is what verifies (it covers the parameters).
//
//	go test -run '^$' -bench BenchmarkCallbackCPUPlivo -benchmem ./app/protocol
func BenchmarkCallbackCPUPlivo(b *testing.B) {
	const callbackURL = "https://hooks.example.com/plivo/callback"
	form := url.Values{
		"MessageUUID": {"0c7e1a42-2f61-11ef-a3d5-0242ac120003"}, "Status": {"delivered"}, "Sequence": {"3"},
		"To": {"447700900123"}, "From": {"14155550100"}, "Type": {"sms"},
		"Units": {"1"}, "TotalRate": {"0.00450"}, "TotalAmount": {"0.00450"},
		"MCC": {"234"}, "MNC": {"10"}, "ParentMessageUUID": {"0c7e1a42-2f61-11ef-a3d5-0242ac120003"},
		"MessageTime": {"2024-05-01 10:00:00.123456"}, "QueuedTime": {"2024-05-01 10:00:00.234567"},
		"SentTime": {"2024-05-01 10:00:01.345678"}, "DeliveryReportTime": {"2024-05-01 10:00:04.456789"},
	}
	body := []byte(form.Encode())
	const v2Nonce, v3Nonce = "12345678901234567890", "09876543210987654321"
	v2, err := ComputeSignatureV2(benchToken, callbackURL, v2Nonce)
	if err != nil {
		b.Fatal(err)
	}
	v3, err := ComputeSignatureV3(benchToken, "POST", callbackURL, v3Nonce, form)
	if err != nil {
		b.Fatal(err)
	}
	h := SignatureHeaders{V2: v2, MaV2: v2, V2Nonce: v2Nonce, V3: v3, MaV3: v3, V3Nonce: v3Nonce}
	v := NewSignatureVerifier(benchToken)
	b.ReportAllocs()
	for b.Loop() {
		params, err := CallbackParams("POST", "application/x-www-form-urlencoded", body, "")
		if err != nil {
			b.Fatal(err)
		}
		ver, err := v.Verify(SignedRequest{Method: "POST", URL: callbackURL, Params: params, Headers: h})
		if err != nil || ver.Scheme != SchemeV3 || len(ver.Nonces) != 2 {
			b.Fatalf("verify: %+v, %v", ver, err)
		}
		if _, err := ParseCallback(params); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyV3 is the signature check alone, as Plivo's headers come.
//
//	go test -run '^$' -bench BenchmarkVerifyV3 -benchmem ./app/protocol
func BenchmarkVerifyV3(b *testing.B) {
	const callbackURL = "https://hooks.example.com/plivo/callback"
	form := url.Values{
		"MessageUUID": {"0c7e1a42-2f61-11ef-a3d5-0242ac120003"}, "Status": {"delivered"}, "Sequence": {"3"},
		"To": {"447700900123"}, "From": {"14155550100"}, "Type": {"sms"},
		"Units": {"1"}, "TotalRate": {"0.00450"}, "TotalAmount": {"0.00450"},
		"MCC": {"234"}, "MNC": {"10"}, "ParentMessageUUID": {"0c7e1a42-2f61-11ef-a3d5-0242ac120003"},
		"MessageTime": {"2024-05-01 10:00:00.123456"}, "QueuedTime": {"2024-05-01 10:00:00.234567"},
		"SentTime": {"2024-05-01 10:00:01.345678"}, "DeliveryReportTime": {"2024-05-01 10:00:04.456789"},
	}
	const v2Nonce, v3Nonce = "12345678901234567890", "09876543210987654321"
	v2, _ := ComputeSignatureV2(benchToken, callbackURL, v2Nonce)
	v3, _ := ComputeSignatureV3(benchToken, "POST", callbackURL, v3Nonce, form)
	req := SignedRequest{Method: "POST", URL: callbackURL, Params: form,
		Headers: SignatureHeaders{V2: v2, MaV2: v2, V2Nonce: v2Nonce, V3: v3, MaV3: v3, V3Nonce: v3Nonce}}
	v := NewSignatureVerifier(benchToken, "c2Vjb25kIHRva2VuIGZvciBhIHN1YmFjY291bnQ")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(req); err != nil {
			b.Fatal(err)
		}
	}
}
