package sshconfig

import (
	"errors"
	"strings"
)

// The line syntax follows OpenSSH's readconf.c: the keyword ends at
// whitespace, a double quote or one '=' (so "Key=Value", "Key = Value"
// and "Key Value" are the same), and the rest is split into arguments as
// argv_split does: whitespace separates, single or double quotes group,
// a backslash escapes a quote, a backslash or (outside quotes) a space,
// and a '#' at the start of an argument ends the line.

const whitespace = " \t\r\n"

// splitKeyword returns a line's keyword and the text after it (with the
// '=' and the whitespace around it removed). keyword is "" for a blank
// line or a comment.
func splitKeyword(line string) (keyword, rest string) {
	line = strings.TrimRight(line, whitespace+"\f")
	line = strings.TrimLeft(line, whitespace)
	if line == "" || line[0] == '#' {
		return "", ""
	}
	i := strings.IndexAny(line, whitespace+"\"=")
	if i < 0 {
		return line, ""
	}
	keyword = line[:i]
	if line[i] == '"' {
		// readconf's strdelim: a quote after the keyword is dropped and
		// the keyword runs on to the next quote. Nobody writes this; keep
		// the keyword, the rest is what follows the quote.
		return keyword, strings.TrimLeft(line[i+1:], whitespace)
	}
	rest = line[i:]
	eq := rest[0] == '='
	rest = strings.TrimLeft(rest[1:], whitespace)
	if !eq && strings.HasPrefix(rest, "=") {
		rest = strings.TrimLeft(rest[1:], whitespace)
	}
	return keyword, rest
}

var errQuotes = errors.New("a quote is not closed")

// splitArgs splits the arguments of a line as OpenSSH's argv_split does,
// a '#' at the start of an argument ending them.
func splitArgs(s string) ([]string, error) {
	var args []string
	i := 0
	for i < len(s) {
		if s[i] == ' ' || s[i] == '\t' {
			i++
			continue
		}
		if s[i] == '#' {
			break
		}
		var b strings.Builder
		var quote byte
		for ; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '\\' && i+1 < len(s) && (s[i+1] == '\'' || s[i+1] == '"' || s[i+1] == '\\' || (quote == 0 && s[i+1] == ' ')):
				i++
				b.WriteByte(s[i])
				continue
			case quote == 0 && (c == ' ' || c == '\t'):
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
				continue
			case quote != 0 && c == quote:
				quote = 0
				continue
			default:
				b.WriteByte(c)
				continue
			}
			break
		}
		if quote != 0 {
			return nil, errQuotes
		}
		args = append(args, b.String())
	}
	return args, nil
}

// nextWord is readconf's strdelim, which Match lines are split with:
// whitespace or one '=' separates, and a double-quoted word may hold
// spaces. ok is false for an unclosed quote.
func nextWord(s string) (word, rest string, ok bool) {
	s = strings.TrimLeft(s, whitespace)
	if s == "" {
		return "", "", true
	}
	i := strings.IndexAny(s, whitespace+"\"=")
	if i < 0 {
		return s, "", true
	}
	if s[i] == '"' {
		j := strings.IndexByte(s[i+1:], '"')
		if j < 0 {
			return "", "", false
		}
		return s[:i] + s[i+1:i+1+j], strings.TrimLeft(s[i+2+j:], whitespace), true
	}
	word, rest = s[:i], s[i:]
	eq := rest[0] == '='
	rest = strings.TrimLeft(rest[1:], whitespace)
	if !eq && strings.HasPrefix(rest, "=") {
		rest = strings.TrimLeft(rest[1:], whitespace)
	}
	return word, rest, true
}
