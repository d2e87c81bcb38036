// Plivo's SMS error codes (ErrorCode in delivery-status callbacks), from
// Plivo's published error-code table (docs "Messaging > Troubleshooting >
// Error codes" and its blog post introducing the codes). Only codes whose
// meaning we could confirm are listed; others show as "unknown code".
export const errorCodes = {
  "10": "Invalid message: blank, or rejected by a downstream carrier as invalid.",
  "20": "Network error at the delivering carrier; temporary, retry later.",
  "30": "Spam detected: blocked by a carrier spam filter (also: too much traffic on US/CA long codes).",
  "40": "Invalid source number: wrong format, not SMS-enabled, or not on this Plivo account.",
  "50": "Invalid destination number: wrong format, not SMS-enabled, or a landline.",
  "60": "Loop detected: messages bouncing between auto-responders, or an unroutable loop.",
  "70": "Destination permanently unavailable: the number is not active.",
  "80": "Destination temporarily unavailable: handset off or out of coverage; retry later.",
  "90": "No route available to the destination carrier.",
  "100": "Prohibited by carrier: the destination network does not accept this message.",
  "110": "Message too long (over 1,600 GSM or 737 Unicode characters).",
  "200": "Recipient opted out (STOP) of messages from this source number.",
  "201": "US toll-free numbers cannot send to Canadian destinations.",
  "420": "Message expired: it waited in Plivo's queue past its validity period and was never sent.",
  "450": "Destination country barred by the account's geo permissions.",
  "900": "Insufficient credit on the Plivo account; the message was not sent.",
  "1000": "Unknown error, unknown to Plivo and the carriers too.",
};

// describeError returns the meaning of a Plivo error code in words.
export function describeError(code) {
  if (!code || code === "000" || code === "0") return "";
  return errorCodes[String(Number(code))] || errorCodes[code] || "unknown code";
}
