package protocol

import (
	"net/url"
	"reflect"
	"testing"
)

// checkParseForm fails when parseForm and url.ParseQuery disagree on s.
func checkParseForm(t *testing.T, s string) {
	t.Helper()
	got, gotErr := parseForm(s)
	want, wantErr := url.ParseQuery(s)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("parseForm(%q) error %v, url.ParseQuery %v", s, gotErr, wantErr)
	}
	if wantErr != nil {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseForm(%q) = %v, url.ParseQuery %v", s, got, want)
	}
}

func TestParseFormMatchesParseQuery(t *testing.T) {
	for _, s := range []string{
		"", "&", "&&", "=", "a", "a=", "=b", "a=b", "a=b&", "&a=b", "a=b&&c=d",
		"a=1&a=2&b=3&a=4", "a=b=c", "a+b=c+d", "a%20b=c%2Bd", "a=%zz", "a=%4", "a=%",
		"%=1", "a=1;b=2", "a=%26&b=%3D", "k=%e2%82%AC", "MessageUUID=0c7e1a42-2f61-11ef-a3d5-0242ac120003&" +
			"MessageTime=2024-05-01+10%3A00%3A00.123456&Status=delivered",
	} {
		checkParseForm(t, s)
	}
	// A repeated key's values must not share storage with the next key's.
	m, err := parseForm("a=1&b=2&a=3")
	if err != nil || m.Get("b") != "2" || len(m["a"]) != 2 || m["a"][1] != "3" {
		t.Fatalf("repeated key: %v, %v", m, err)
	}
}

func FuzzParseForm(f *testing.F) {
	f.Add("a=1&b=%20&c+d=e")
	f.Add("a=1&a=2;b")
	f.Fuzz(func(t *testing.T, s string) { checkParseForm(t, s) })
}
