package app

import (
	"encoding"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// ConfigErrors is several config problems found at once (every unknown key
// of a file), one line each. errors.As finds the first *ConfigError in it.
type ConfigErrors []*ConfigError

func (es ConfigErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each problem to errors.Is and errors.As.
func (es ConfigErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// configKeys describes the keys a config file may hold: dotted names of
// sections (tables, including arrays of tables such as forward.webhooks)
// and of the keys inside them, taken from the Config type's toml tags.
type configKeys struct {
	sections map[string]bool
	leaves   map[string]reflect.Type
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func knownConfigKeys() configKeys {
	k := configKeys{sections: map[string]bool{"": true}, leaves: map[string]reflect.Type{}}
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := tomlName(f)
			if name == "" || name == "-" {
				continue
			}
			if prefix != "" {
				name = prefix + "." + name
			}
			ft := f.Type
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && !reflect.PointerTo(ft.Elem()).Implements(textUnmarshaler) {
				ft = ft.Elem() // an array of tables
			}
			if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(textUnmarshaler) {
				k.sections[name] = true
				walk(name, ft)
				continue
			}
			k.leaves[name] = f.Type
		}
	}
	walk("", reflect.TypeFor[Config]())
	return k
}

// unknownKeyErrors turns go-toml's list of unknown keys into one problem
// per key, each with a suggestion when a known key is close; keys under an
// unknown section are reported once, as that section.
func unknownKeyErrors(strict *toml.StrictMissingError) ConfigErrors {
	known := knownConfigKeys()
	var out ConfigErrors
	seen := map[string]bool{}
	for _, e := range strict.Errors {
		parts := e.Key()
		// The longest known section the key is under.
		n := 0
		for n < len(parts)-1 && known.sections[strings.Join(parts[:n+1], ".")] {
			n++
		}
		parent := strings.Join(parts[:n], ".")
		name := strings.Join(parts[:n+1], ".")
		if seen[name] {
			continue
		}
		seen[name] = true
		problem := "unknown key"
		if n < len(parts)-1 {
			problem = "unknown section"
		}
		var candidates []string
		for s := range known.sections {
			if s != "" && parentOf(s) == parent {
				candidates = append(candidates, s)
			}
		}
		for l := range known.leaves {
			if parentOf(l) == parent {
				candidates = append(candidates, l)
			}
		}
		if best := closest(name, candidates); best != "" {
			// go-toml names an unknown table by its name alone: when the
			// nearest known name is a section, it was meant as one.
			if known.sections[best] {
				problem = "unknown section"
			}
			problem += " (did you mean " + best + "?)"
		}
		out = append(out, &ConfigError{Key: name, Problem: problem})
	}
	return out
}

func parentOf(key string) string {
	i := strings.LastIndexByte(key, '.')
	if i < 0 {
		return ""
	}
	return key[:i]
}

// closest returns the candidate nearest to name by edit distance of their
// last components, "" when none is near enough to be a typo.
func closest(name string, candidates []string) string {
	sort.Strings(candidates) // ties resolve the same way every run
	last := name[strings.LastIndexByte(name, '.')+1:]
	best, bestD := "", -1
	for _, c := range candidates {
		cl := c[strings.LastIndexByte(c, '.')+1:]
		d := editDistance(last, cl)
		if d <= max(2, len(cl)/3) && (bestD < 0 || d < bestD) {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// typeErrorRE matches go-toml's type mismatch message.
var typeErrorRE = regexp.MustCompile(`cannot decode TOML (\w+) into struct field \S+ of type (\S+)`)

// typeProblem rewrites a go-toml type mismatch in the operator's words
// ("must be a string (got an integer)"); other messages pass unchanged.
func typeProblem(msg string) string {
	m := typeErrorRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	return "must be " + goTypeWords(m[2]) + " (got " + tomlTypeWords(m[1]) + ")"
}

func goTypeWords(t string) string {
	if rest, ok := strings.CutPrefix(t, "[]"); ok {
		return "a list of " + strings.TrimPrefix(strings.TrimPrefix(goTypeWords(rest), "an "), "a ") + "s"
	}
	switch t {
	case "string", "app.Secret":
		return "a string"
	case "int", "int64", "uint", "uint64":
		return "an integer"
	case "float64", "float32":
		return "a number"
	case "bool":
		return "true or false"
	case "app.Duration":
		return `a duration like "30m"`
	}
	if strings.HasPrefix(t, "app.") {
		return "a table"
	}
	return t
}

func tomlTypeWords(t string) string {
	switch t {
	case "integer":
		return "an integer"
	case "array":
		return "a list"
	case "inline", "table":
		return "a table"
	}
	return "a " + t
}
