// Plivo's SMS error codes (ErrorCode in delivery-status callbacks). The
// table is the server's (app/protocol/errorcodes.go), served as the
// generated error-codes.js; codes not in it show as "unknown code".
import { errorCodes } from "./error-codes.js";

export { errorCodes };

// describeError returns the meaning of a Plivo error code in words.
export function describeError(code) {
  if (!code || code === "000" || code === "0") return "";
  return errorCodes[String(Number(code))] || errorCodes[code] || "unknown code";
}
