package storage

// Destination country from a number's calling code (ITU-T E.164), for the
// analytics counters. A compact prefix table instead of a phone-number
// library: it runs on the writer goroutine for every message whose
// counters move, and a longest-prefix lookup of at most three digits is a
// few array loads, no parsing. Numbers sharing a calling code are told
// apart only where it is cheap (+1: Canada's area codes; +7: Kazakhstan);
// other shared codes count under the code's main country.

import (
	"strconv"
	"strings"
)

// callingCodes[len-1][code] is the ISO 3166-1 alpha-2 region of a calling
// code of len digits: arrays indexed by the code's value, so a lookup is a
// load, not a hash.
var callingCodes = func() (t [3][1000]string) {
	const table = "1:US 7:RU 20:EG 27:ZA 30:GR 31:NL 32:BE 33:FR 34:ES 36:HU 39:IT 40:RO 41:CH 43:AT 44:GB 45:DK 46:SE 47:NO 48:PL 49:DE " +
		"51:PE 52:MX 53:CU 54:AR 55:BR 56:CL 57:CO 58:VE 60:MY 61:AU 62:ID 63:PH 64:NZ 65:SG 66:TH 81:JP 82:KR 84:VN 86:CN " +
		"90:TR 91:IN 92:PK 93:AF 94:LK 95:MM 98:IR 211:SS 212:MA 213:DZ 216:TN 218:LY 220:GM 221:SN 222:MR 223:ML 224:GN " +
		"225:CI 226:BF 227:NE 228:TG 229:BJ 230:MU 231:LR 232:SL 233:GH 234:NG 235:TD 236:CF 237:CM 238:CV 239:ST 240:GQ " +
		"241:GA 242:CG 243:CD 244:AO 245:GW 246:IO 248:SC 249:SD 250:RW 251:ET 252:SO 253:DJ 254:KE 255:TZ 256:UG 257:BI " +
		"258:MZ 260:ZM 261:MG 262:RE 263:ZW 264:NA 265:MW 266:LS 267:BW 268:SZ 269:KM 290:SH 291:ER 297:AW 298:FO 299:GL " +
		"350:GI 351:PT 352:LU 353:IE 354:IS 355:AL 356:MT 357:CY 358:FI 359:BG 370:LT 371:LV 372:EE 373:MD 374:AM 375:BY " +
		"376:AD 377:MC 378:SM 380:UA 381:RS 382:ME 383:XK 385:HR 386:SI 387:BA 389:MK 420:CZ 421:SK 423:LI 500:FK 501:BZ " +
		"502:GT 503:SV 504:HN 505:NI 506:CR 507:PA 508:PM 509:HT 590:GP 591:BO 592:GY 593:EC 594:GF 595:PY 596:MQ 597:SR " +
		"598:UY 599:CW 670:TL 672:NF 673:BN 674:NR 675:PG 676:TO 677:SB 678:VU 679:FJ 680:PW 681:WF 682:CK 683:NU 685:WS " +
		"686:KI 687:NC 688:TV 689:PF 690:TK 691:FM 692:MH 850:KP 852:HK 853:MO 855:KH 856:LA 880:BD 886:TW 960:MV 961:LB " +
		"962:JO 963:SY 964:IQ 965:KW 966:SA 967:YE 968:OM 970:PS 971:AE 972:IL 973:BH 974:QA 975:BT 976:MN 977:NP 992:TJ " +
		"993:TM 994:AZ 995:GE 996:KG 998:UZ"
	for _, e := range strings.Fields(table) {
		code, region, _ := strings.Cut(e, ":")
		n, _ := strconv.Atoi(code)
		t[len(code)-1][n] = region
	}
	return t
}()

// canadianAreaCodes are the NANP area codes of Canada; the rest of +1 counts
// as US (the Caribbean members are few and small).
var canadianAreaCodes = func() (t [1000]bool) {
	for _, c := range strings.Fields("204 226 236 249 250 263 289 306 343 354 365 367 368 382 403 416 418 428 431 437 438 450 " +
		"468 474 506 514 519 548 579 581 584 587 600 604 613 639 647 672 683 705 709 742 753 778 780 782 807 819 825 867 873 879 902 905") {
		n, _ := strconv.Atoi(c)
		t[n] = true
	}
	return t
}()

// countryOf returns the region of an E.164 number (with or without "+",
// spaces or dashes), "" when it has no digits or no known calling code.
func countryOf(number string) string {
	var d [4]byte // the first four digits are all a lookup needs
	n := 0
	for i := 0; i < len(number) && n < len(d); i++ {
		c := number[i]
		switch {
		case c >= '0' && c <= '9':
			d[n] = c
			n++
		case c == '+' || c == ' ' || c == '-' || c == '(' || c == ')' || c == '.':
		default:
			return ""
		}
	}
	if n == 0 {
		return ""
	}
	val := func(l int) int { // the value of the first l digits
		v := 0
		for _, c := range d[:l] {
			v = v*10 + int(c-'0')
		}
		return v
	}
	if d[0] == '1' {
		if n == 4 && canadianAreaCodes[val(4)-1000] {
			return "CA"
		}
		return "US"
	}
	if d[0] == '7' {
		if n >= 2 && (d[1] == '6' || d[1] == '7') {
			return "KZ"
		}
		return "RU"
	}
	for l := min(n, 3); l >= 1; l-- {
		if r := callingCodes[l-1][val(l)]; r != "" {
			return r
		}
	}
	return ""
}
