package config

import (
	"fmt"
	"strconv"

	"gopkg.in/yaml.v3"
)

// checkFile parses the YAML file b (named path) and reports syntax errors and keys that caud does
// not know, with their line, before viper sees the file (viper would silently ignore them).
func checkFile(path string, b []byte) []error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return []error{fmt.Errorf("config: %s: %w", path, err)}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // empty file or only comments
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	var errs []error
	walkFile(path, "", root, schema(), &errs)
	return errs
}

func walkFile(path, prefix string, n *yaml.Node, s *node, errs *[]error) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty section ("http:") keeps the defaults
	}
	where := func(n *yaml.Node) string { return path + ":" + strconv.Itoa(n.Line) }
	switch {
	case s.leaf:
		if n.Kind == yaml.MappingNode {
			*errs = append(*errs, fmt.Errorf("config: %s: %s: must be a value, not a mapping", where(n), prefix))
		}
		if n.Kind == yaml.SequenceNode && !s.list {
			*errs = append(*errs, fmt.Errorf("config: %s: %s: must be a value, not a list", where(n), prefix))
		}
	case s.elem != nil:
		if n.Kind != yaml.SequenceNode {
			*errs = append(*errs, fmt.Errorf("config: %s: %s: must be a list", where(n), prefix))
			return
		}
		for i, item := range n.Content {
			walkFile(path, fmt.Sprintf("%s[%d]", prefix, i), item, s.elem, errs)
		}
	default:
		if n.Kind != yaml.MappingNode {
			name := prefix
			if name == "" {
				name = "top level"
			}
			*errs = append(*errs, fmt.Errorf("config: %s: %s: must be a mapping", where(n), name))
			return
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				walkFile(path, prefix, val, s, errs)
				continue
			}
			key := joinKey(prefix, k.Value)
			child, ok := s.children[k.Value]
			if !ok {
				msg := fmt.Sprintf("config: %s: unknown key %q", where(k), key)
				if near := nearest(k.Value, s.names()); near != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", joinKey(prefix, near))
				}
				*errs = append(*errs, fmt.Errorf("%s", msg))
				continue
			}
			if seen[k.Value] {
				*errs = append(*errs, fmt.Errorf("config: %s: %s: duplicate key", where(k), key))
			}
			seen[k.Value] = true
			walkFile(path, key, val, child, errs)
		}
	}
}

func joinKey(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

// nearest returns the candidate closest to s when it is a plausible typo, else "".
func nearest(s string, candidates []string) string {
	best, bestD := "", 0
	for _, c := range candidates {
		d := levenshtein([]rune(s), []rune(c))
		if best == "" || d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" || bestD > 1+len(s)/5 {
		return ""
	}
	return best
}
