package sshconfig

import "strings"

// matchPattern reports whether s matches the OpenSSH wildcard pattern p:
// '*' matches any run of bytes, '?' any one byte, everything else itself.
// It runs in O(len(s)·len(p)) at worst (the usual backtracking to the
// last '*' only), never exponentially.
func matchPattern(s, p string) bool {
	si, pi := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			si++
			pi++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// matchList is OpenSSH's match_pattern_list: pattern is a comma-separated
// list of patterns, each possibly negated with '!'. It returns 1 when s
// matches a pattern and no negated one, -1 when it matches a negated one,
// 0 otherwise. With lower the patterns are lowercased first.
func matchList(s, pattern string, lower bool) int {
	got := 0
	for i := 0; i < len(pattern); {
		neg := pattern[i] == '!'
		if neg {
			i++
		}
		j := strings.IndexByte(pattern[i:], ',')
		if j < 0 {
			j = len(pattern) - i
		}
		sub := pattern[i : i+j]
		i += j
		if i < len(pattern) {
			i++ // the comma
		}
		if lower {
			sub = strings.ToLower(sub)
		}
		if len(sub) >= 1023 { // OpenSSH's buffer: a longer one never matches
			continue
		}
		if matchPattern(s, sub) {
			if neg {
				return -1
			}
			got = 1
		}
	}
	return got
}

// matchHostList is match_hostname: the host lowercased against a
// lowercased pattern list.
func matchHostList(host, pattern string) bool {
	return matchList(strings.ToLower(host), pattern, true) == 1
}
