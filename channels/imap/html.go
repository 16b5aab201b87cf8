package imap

import (
	"strings"

	"golang.org/x/net/html"
)

// htmlToText turns HTML into readable text: scripts, styles and the head are dropped, block
// elements and <br> become line breaks, entities are decoded, whitespace inside a line collapses.
func htmlToText(s string) string {
	z := html.NewTokenizer(strings.NewReader(s))
	var b strings.Builder
	skip := 0 // depth inside script/style/head/title
	lineStart := true
	space := false
	nl := func() {
		b.WriteByte('\n')
		lineStart, space = true, false
	}
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return b.String()
		case html.TextToken:
			if skip > 0 {
				continue
			}
			t := string(z.Text())
			if t != "" && isHTMLSpace(rune(t[0])) && !lineStart {
				space = true
			}
			for k, f := range strings.FieldsFunc(t, isHTMLSpace) {
				if !lineStart && (space || k > 0) {
					b.WriteByte(' ')
				}
				b.WriteString(f)
				lineStart, space = false, false
			}
			if t != "" && isHTMLSpace(rune(t[len(t)-1])) {
				space = true
			}
		case html.StartTagToken, html.EndTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			tag := string(name)
			switch tag {
			case "script", "style", "head", "title", "noscript", "template":
				if tt == html.StartTagToken {
					skip++
				} else if tt == html.EndTagToken && skip > 0 {
					skip--
				}
				continue
			}
			if skip > 0 {
				continue
			}
			switch tag {
			case "br":
				nl()
			case "p":
				if tt == html.EndTagToken {
					nl()
				} else if !lineStart {
					nl()
				}
			case "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "ul", "ol", "pre", "hr":
				if !lineStart {
					nl()
				}
			case "td", "th":
				if !lineStart {
					b.WriteByte('\t')
				}
			}
		}
	}
}

func isHTMLSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f'
}
