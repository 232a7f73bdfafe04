package config

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

// configDoc is the user reference written from the field comments of config.go.
const configDoc = "../docs/configuration.md"

// docMinimal is the smallest valid file: everything else comes from the defaults,
// so the parsed value of every key is its default (or, for a member's route, the
// member id).
const docMinimal = `
target_groups:
  - name: g
    members:
      - {id: m1, address: 127.0.0.1:1}
`

// docOptional is docMinimal with every optional block given empty ("tls: {}"), for
// the defaults of the keys inside blocks that are absent (nil) when left out.
const docOptional = `
target_groups:
  - name: g
    tls: {}
    members:
      - {id: m1, address: 127.0.0.1:1}
`

// TestConfigurationDocCoversEveryKey keeps docs/configuration.md and the Config type
// in step: every key of the type has a row in one of the doc's key tables, every row
// names a key that exists, and every default the doc states in backticks is the
// default the code applies.
func TestConfigurationDocCoversEveryKey(t *testing.T) {
	rows := readKeyRows(t, configDoc)

	leaves, all := map[string]bool{}, map[string]bool{}
	keyPaths(reflect.TypeFor[Config](), "", leaves, all)
	if len(leaves) == 0 {
		t.Fatal("keyPaths found no keys in Config")
	}

	for _, k := range sortedKeys(leaves) {
		if _, ok := rows[k]; !ok {
			t.Errorf("%s: key of config.Config has no row in a key table of %s", k, configDoc)
		}
	}
	for _, k := range sortedKeys(rows) {
		if !all[k] {
			t.Errorf("%s: documented in %s (line %d) but config.Config has no such key", k, configDoc, rows[k].line)
		}
	}

	cfg, err := Parse([]byte(docMinimal))
	if err != nil {
		t.Fatalf("Parse(minimal config) = %v", err)
	}
	optional, err := Parse([]byte(docOptional))
	if err != nil {
		t.Fatalf("Parse(minimal config with empty optional blocks) = %v", err)
	}
	for _, k := range sortedKeys(rows) {
		row := rows[k]
		want, ok := firstCode(row.def)
		if !ok || !leaves[k] {
			continue // "required", "the member id": not a literal default
		}
		v, ok := valueAt(reflect.ValueOf(*cfg), k)
		if !ok { // inside an optional block, absent from the minimal config
			v, ok = valueAt(reflect.ValueOf(*optional), k)
		}
		if !ok {
			t.Errorf("%s: no value in the parsed minimal config", k)
			continue
		}
		if reason := sameDefault(v, want); reason != "" {
			t.Errorf("%s: %s line %d states default %q, but the code's default is %s", k, configDoc, row.line, want, reason)
		}
	}
}

// TestConfigurationDocExampleIsCurrent checks that the doc carries examples/fbdev.yaml
// as it is today, so the copy cannot drift from the file.
func TestConfigurationDocExampleIsCurrent(t *testing.T) {
	doc, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../examples/fbdev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	block := append([]byte("```yaml\n"), example...)
	if !bytes.HasSuffix(block, []byte("\n")) {
		block = append(block, '\n')
	}
	block = append(block, "```\n"...)
	if !bytes.Contains(doc, block) {
		t.Errorf("%s does not contain examples/fbdev.yaml verbatim in a ```yaml block; copy the file into it again", configDoc)
	}
	if _, err := Parse(example); err != nil {
		t.Errorf("Parse(examples/fbdev.yaml) = %v", err)
	}
}

// keyPaths adds the key path of every field reachable from struct type t, as the doc
// writes it ("session.learned.ttl", "target_groups[].members[].weight"), to all, and
// those of values that are neither structs nor lists of structs to leaves too. Fields
// tagged yaml:"-" and unexported fields are skipped; ",inline" fields add their keys
// at the level of their parent.
func keyPaths(t reflect.Type, prefix string, leaves, all map[string]bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if slices.Contains(strings.Split(opts, ","), "inline") && ft.Kind() == reflect.Struct {
			keyPaths(ft, prefix, leaves, all)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // goccy/go-yaml's default key
		}
		path := prefix + name
		all[path] = true
		switch {
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Time]():
			keyPaths(ft, path+".", leaves, all)
		case (ft.Kind() == reflect.Slice || ft.Kind() == reflect.Array) && ft.Elem().Kind() == reflect.Struct:
			all[path+"[]"] = true
			keyPaths(ft.Elem(), path+"[].", leaves, all)
		default:
			leaves[path] = true
		}
	}
}

// keyRow is one row of a key table of the doc.
type keyRow struct {
	line int    // 1-based
	def  string // the default column as written
}

// readKeyRows returns the rows of every key table of the doc: a Markdown table whose
// header's first cell is "key". Each row's first cell must be one key path in
// backticks, and a key may have only one row.
func readKeyRows(t *testing.T, path string) map[string]keyRow {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]keyRow{}
	inTable, inKeyTable := false, false
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			inTable, inKeyTable = false, false
			continue
		}
		cells := splitRow(line)
		if !inTable {
			inTable = true
			inKeyTable = len(cells) >= 2 && cells[0] == "key" && cells[1] == "default"
			continue
		}
		if !inKeyTable || strings.Trim(strings.Join(cells, ""), "-: ") == "" {
			continue // another table, or the separator row
		}
		key, ok := firstCode(cells[0])
		if !ok || "`"+key+"`" != cells[0] {
			t.Errorf("%s line %d: first cell %q of a key table is not one key in backticks", path, n, cells[0])
			continue
		}
		if prev, dup := rows[key]; dup {
			t.Errorf("%s line %d: %s already has a row at line %d", path, n, key, prev.line)
			continue
		}
		rows[key] = keyRow{line: n, def: cells[1]}
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no key tables (a table whose header starts with | key | default |)", path)
	}
	return rows
}

// splitRow splits a Markdown table row into trimmed cells; a '|' inside backticks or
// escaped as "\|" does not end a cell.
func splitRow(line string) []string {
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	var cells []string
	var cell strings.Builder
	code := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line) && line[i+1] == '|':
			cell.WriteByte('|')
			i++
			continue
		case c == '`':
			code = !code
		case c == '|' && !code:
			cells = append(cells, strings.TrimSpace(cell.String()))
			cell.Reset()
			continue
		}
		cell.WriteByte(c)
	}
	return append(cells, strings.TrimSpace(cell.String()))
}

// firstCode returns the text of the first `code span` of s.
func firstCode(s string) (string, bool) {
	_, rest, ok := strings.Cut(s, "`")
	if !ok {
		return "", false
	}
	code, _, ok := strings.Cut(rest, "`")
	return code, ok
}

// valueAt follows a doc key path through v, taking the first element of each list and
// the value of each pointer; it fails at a nil pointer (an optional block left out).
func valueAt(v reflect.Value, path string) (reflect.Value, bool) {
	for _, part := range strings.Split(path, ".") {
		name, list := strings.CutSuffix(part, "[]")
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		f, ok := fieldByKey(v.Type(), name)
		if !ok {
			return reflect.Value{}, false
		}
		v = v.FieldByIndex(f.Index)
		if list {
			if v.Len() == 0 {
				// No element in the file: the element's defaults are what decoding
				// an empty mapping gives (its UnmarshalYAML).
				v = decodeEmpty(v.Type().Elem())
			} else {
				v = v.Index(0)
			}
		}
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v = decodeEmpty(v.Type().Elem())
			} else {
				v = v.Elem()
			}
		}
	}
	return v, true
}

// decodeEmpty is a value of type t decoded from an empty YAML mapping.
func decodeEmpty(t reflect.Type) reflect.Value {
	p := reflect.New(t)
	if err := yaml.Unmarshal([]byte("{}"), p.Interface()); err != nil {
		panic(err)
	}
	return p.Elem()
}

// sameDefault compares a value of the parsed config with the default the doc writes
// for it: `""` or a bare string, `true`, a number, a duration such as `1m30s`, or a
// list `[a, b]`. It returns "" when they agree, else the code's value.
func sameDefault(v reflect.Value, doc string) string {
	got := func() string { return strconv.Quote(formatValue(v)) }
	if v.Type() == reflect.TypeFor[time.Duration]() {
		d, err := time.ParseDuration(doc)
		if err != nil || d != time.Duration(v.Int()) {
			return got()
		}
		return ""
	}
	switch v.Kind() {
	case reflect.String:
		if doc == `""` {
			doc = ""
		}
		if v.String() != doc {
			return got()
		}
	case reflect.Bool:
		b, err := strconv.ParseBool(doc)
		if err != nil || b != v.Bool() {
			return got()
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(doc, 10, 64)
		if err != nil || n != v.Int() {
			return got()
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(doc, 10, 64)
		if err != nil || n != v.Uint() {
			return got()
		}
	case reflect.Slice:
		if formatValue(v) != doc {
			return got()
		}
	default:
		return "of kind " + v.Kind().String() + ", which this test cannot compare"
	}
	return ""
}

// formatValue writes v the way the doc writes defaults.
func formatValue(v reflect.Value) string {
	if v.Type() == reflect.TypeFor[time.Duration]() {
		return time.Duration(v.Int()).String()
	}
	if v.Kind() == reflect.Slice {
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = formatValue(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	if v.Kind() == reflect.String && v.String() == "" {
		return `""`
	}
	return fmt.Sprint(v.Interface())
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
