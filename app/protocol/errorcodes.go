package protocol

import "strings"

// ErrorCodes maps Plivo's SMS error codes (the ErrorCode of a
// delivery-status callback) to their meaning for the operator, as Plivo
// documents them: the messaging error-code table and the blog post
// introducing it (10–110, 200, 201, 1000), the support article on
// insufficient balance (900) and the SMS FAQ on geo permissions (450), the
// message-expiry code of the status callback documentation (420). Only codes we could confirm are listed; any
// other code is counted as "other" in metrics, which keeps the label set
// closed whatever a carrier sends. This is the only copy: the dashboard
// reads it from the generated /assets/error-codes.js.
var ErrorCodes = map[string]string{
	"10":   "Invalid message: blank, or rejected by a downstream carrier as invalid.",
	"20":   "Network error at the delivering carrier; temporary, retry later.",
	"30":   "Spam detected: blocked by a carrier spam filter (also: too much traffic on US/CA long codes).",
	"40":   "Invalid source number: wrong format, not SMS-enabled, or not on this Plivo account.",
	"50":   "Invalid destination number: wrong format, not SMS-enabled, or a landline.",
	"60":   "Loop detected: messages bouncing between auto-responders, or an unroutable loop.",
	"70":   "Destination permanently unavailable: the number is not active.",
	"80":   "Destination temporarily unavailable: handset off or out of coverage; retry later.",
	"90":   "No route available to the destination carrier.",
	"100":  "Prohibited by carrier: the destination network does not accept this message.",
	"110":  "Message too long (over 1,600 GSM or 737 Unicode characters).",
	"200":  "Recipient opted out (STOP) of messages from this source number.",
	"201":  "US toll-free numbers cannot send to Canadian destinations.",
	"420":  "Message expired: it waited in Plivo's queue past its validity period and was never sent.",
	"450":  "Destination country barred by the account's geo permissions.",
	"900":  "Insufficient credit on the Plivo account; the message was not sent.",
	"1000": "Unknown error, unknown to Plivo and the carriers too.",
}

// ErrorCodeOther is the metrics label of codes not in ErrorCodes.
const ErrorCodeOther = "other"

// NormalizeErrorCode returns the code as ErrorCodes spells it, "" when
// there is no error ("", "0", "000"), or ErrorCodeOther.
func NormalizeErrorCode(code string) string {
	code = strings.TrimLeft(strings.TrimSpace(code), "0")
	if code == "" {
		return ""
	}
	if _, ok := ErrorCodes[code]; ok {
		return code
	}
	return ErrorCodeOther
}
