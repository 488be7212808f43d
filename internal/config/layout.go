package config

import (
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// position is a 1-based line and byte column.
type position struct{ line, col int }

// location is where a key is defined. Unknown keys are reported at the key,
// bad values at the value.
type location struct{ key, value position }

// layout records where every key of a document is written, because the
// go-toml decoder yields values without positions. Keys are full dotted paths
// as built by joinKey and indexKey.
type layout struct {
	data       []byte
	lineStarts []int
	at         map[string]location
	// exprs maps the start of each top-level expression to its full key: the
	// decoder names the key of a duplicate relative to its table only.
	exprs map[position]string
	// arrays counts the elements so far of each array of tables, to index
	// the keys of [[a.b]] tables.
	arrays map[string]int
}

// locate walks data with go-toml's parser. On a syntax error it returns
// what it found so far and the *unstable.ParserError.
func locate(data []byte) (*layout, error) {
	l := &layout{
		data:       data,
		lineStarts: []int{0},
		at:         map[string]location{},
		exprs:      map[position]string{},
		arrays:     map[string]int{},
	}
	for i, b := range data {
		if b == '\n' {
			l.lineStarts = append(l.lineStarts, i+1)
		}
	}
	var p unstable.Parser
	p.Reset(data)
	table := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = l.header(e)
		case unstable.KeyValue:
			l.keyValue(table, e)
		}
	}
	return l, p.Error()
}

// pos converts a byte offset in data.
func (l *layout) pos(offset int) position {
	line := sort.Search(len(l.lineStarts), func(i int) bool { return l.lineStarts[i] > offset })
	return position{line: line, col: offset - l.lineStarts[line-1] + 1}
}

// mark records a key where it first appears: a table named by several
// headers or dotted keys is best reported where it starts.
func (l *layout) mark(path string, key, value position) {
	if _, ok := l.at[path]; !ok {
		l.at[path] = location{key: key, value: value}
	}
}

// header handles [a.b] and [[a.b]], returning the path of the table that
// following key/values belong to.
func (l *layout) header(e *unstable.Node) string {
	path := ""
	var start position
	it := e.Key()
	for first := true; it.Next(); first = false {
		k := it.Node()
		p := l.pos(int(k.Raw.Offset))
		if first {
			start = p
		}
		path = joinKey(path, string(k.Data))
		l.mark(path, p, p)
		n := l.arrays[path]
		switch {
		case !it.IsLast():
			// A header through an array of tables extends its last element.
			if n > 0 {
				path = indexKey(path, n-1)
			}
		case e.Kind == unstable.ArrayTable:
			l.exprs[start] = path
			l.arrays[path] = n + 1
			path = indexKey(path, n)
			l.mark(path, p, p)
		default:
			l.exprs[start] = path
		}
	}
	return path
}

// keyValue handles a (possibly dotted) key = value inside the table at
// prefix.
func (l *layout) keyValue(prefix string, e *unstable.Node) {
	path := prefix
	var start, p position
	var end int
	it := e.Key()
	for first := true; it.Next(); first = false {
		k := it.Node()
		p = l.pos(int(k.Raw.Offset))
		if first {
			start = p
		}
		path = joinKey(path, string(k.Data))
		if !it.IsLast() {
			l.mark(path, p, p)
		}
		end = int(k.Raw.Offset + k.Raw.Length)
	}
	l.exprs[start] = path
	// Arrays carry no Raw range, so the value is found by skipping the '='.
	for end < len(l.data) && strings.IndexByte(" \t=", l.data[end]) >= 0 {
		end++
	}
	v := l.pos(end)
	l.mark(path, p, v)
	l.value(path, e.Value(), v)
}

// value records the keys inside an inline table or array value at v.
func (l *layout) value(path string, n *unstable.Node, v position) {
	it := n.Children()
	switch n.Kind {
	case unstable.InlineTable:
		for it.Next() {
			l.keyValue(path, it.Node())
		}
	case unstable.Array:
		for i := 0; it.Next(); i++ {
			elem := it.Node()
			p := v
			if elem.Raw.Length > 0 {
				p = l.pos(int(elem.Raw.Offset))
			}
			ep := indexKey(path, i)
			l.mark(ep, p, p)
			l.value(ep, elem, p)
		}
	}
}

// joinKey appends a key part to a dotted path, quoting it as TOML would so
// that a part containing '.' stays unambiguous.
func joinKey(path, part string) string {
	if !isBareKey(part) {
		part = quote(part)
	}
	if path == "" {
		return part
	}
	return path + "." + part
}

// indexKey names element i of the array at path.
func indexKey(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
