package podspec

import (
	"sort"
	"strconv"
	"strings"
)

// syntaxError turns a yaml.v3 parse error into a diagnostic.
//
// yaml.v3 names the line of the construct it was in rather than of the
// offending text ("line 1: did not find expected '-' indicator" for a bad
// line 3), and sometimes no line at all. The line reported is therefore
// found again: the first line at whose end a prefix of the file already
// fails with the same message. It costs a few parses, only for a file that
// does not parse. yaml.v3 gives no column, so the column is 1.
func syntaxError(data []byte, err error) Diagnostic {
	msg, line := splitYAMLError(err.Error())
	ends := lineEnds(data)
	if k := sort.Search(len(ends), func(i int) bool {
		_, perr := decodeAll(data[:ends[i]])
		if perr == nil {
			return false
		}
		m, _ := splitYAMLError(perr.Error())
		return m == msg
	}); k < len(ends) {
		line = k + 1
	}
	return Diagnostic{Pos: Position{Line: max(line, 1), Col: 1}, Message: "YAML syntax error: " + msg}
}

// splitYAMLError splits "yaml: line 3: problem" into the problem and line,
// 0 if the message has none.
func splitYAMLError(s string) (string, int) {
	s = strings.TrimPrefix(s, "yaml: ")
	rest, ok := strings.CutPrefix(s, "line ")
	if !ok {
		return s, 0
	}
	num, msg, ok := strings.Cut(rest, ": ")
	if !ok {
		return s, 0
	}
	line, err := strconv.Atoi(num)
	if err != nil {
		return s, 0
	}
	return msg, line
}

// lineEnds returns the offset just past each line of data, the last being
// len(data). "\r\n" and a lone "\r" end lines as in YAML.
func lineEnds(data []byte) []int {
	var ends []int
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '\r':
			if i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
		case '\n':
		default:
			continue
		}
		ends = append(ends, i+1)
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	return ends
}
