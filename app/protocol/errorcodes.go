package protocol

import "strings"

// ErrorCodes maps Plivo's SMS error codes (the ErrorCode of a
// delivery-status callback) to their reason, as Plivo documents them: the
// messaging error-code table and the blog post introducing it (10–110, 200,
// 201, 1000), the support article on insufficient balance (900) and the SMS
// FAQ on geo permissions (450), the message-expiry code of the status
// callback documentation (420). Only codes we could confirm are listed; any
// other code is counted as "other" in metrics, which keeps the label set
// closed whatever a carrier sends.
var ErrorCodes = map[string]string{
	"10":   "Invalid message",
	"20":   "Network error",
	"30":   "Spam detected",
	"40":   "Invalid source number",
	"50":   "Invalid destination number",
	"60":   "Loop detected",
	"70":   "Destination permanently unavailable",
	"80":   "Destination temporarily unavailable",
	"90":   "No route available",
	"100":  "Prohibited by carrier",
	"110":  "Message too long",
	"200":  "Source number blocked by STOP from destination number",
	"201":  "US toll-free number blocked to Canadian destination",
	"420":  "Message expired in Plivo's queue",
	"450":  "Destination country barred (geo permissions)",
	"900":  "Insufficient credit",
	"1000": "Unknown error",
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
