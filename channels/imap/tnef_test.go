package imap

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

func TestTNEFBodyAndAttachment(t *testing.T) {
	raw, err := os.ReadFile("testdata/tnef/own-body-and-file.tnef")
	if err != nil {
		t.Fatal(err)
	}
	c, err := readTNEF(raw)
	if err != nil {
		t.Fatal(err)
	}
	if c.Truncated {
		t.Error("a whole stream reported as truncated")
	}
	if !strings.Contains(c.Text, "Buenos días: adjunto el oficio") {
		t.Errorf("body %q: the Windows-1252 body was not decoded", c.Text)
	}
	if c.Subject != "Alta de red" {
		t.Errorf("subject %q", c.Subject)
	}
	if len(c.Files) != 1 {
		t.Fatalf("files %+v, want one", c.Files)
	}
	f := c.Files[0]
	if f.Name != "oficio-solicitud-red.txt" || f.ContentType != "text/plain" {
		t.Errorf("file %q %q: the long MAPI name and MIME tag must win over the 8.3 title", f.Name, f.ContentType)
	}
	if string(f.Data) != "Oficio 123/2025: solicitud de nodo de red.\r\n" {
		t.Errorf("data %q", f.Data)
	}
}

func TestTNEFTruncatedKeepsWhatWasRead(t *testing.T) {
	raw, err := os.ReadFile("testdata/tnef/own-truncated.tnef")
	if err != nil {
		t.Fatal(err)
	}
	c, err := readTNEF(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Truncated || !strings.Contains(c.Text, "laboratorio 3") {
		t.Errorf("truncated %v, text %q", c.Truncated, c.Text)
	}
}

func TestTNEFNotTNEF(t *testing.T) {
	if _, err := readTNEF([]byte("\x89PNG\r\n\x1a\n rest")); !errors.Is(err, ErrTNEF) {
		t.Fatalf("err %v, want ErrTNEF", err)
	}
}

// TestTNEFMailIsRead: the winmail.dat inside a mail gives the request its body and attachment,
// and the winmail.dat itself is not offered to the agent.
func TestTNEFMailIsRead(t *testing.T) {
	raw, err := os.ReadFile("testdata/lenient/22-tnef.eml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	m, err := Normalize(bytes.NewReader(raw), func(name, ct string, r io.Reader) (string, error) {
		names = append(names, name+" "+ct)
		_, err := io.Copy(io.Discard, r)
		return "obj", err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Body, "solicitud de alta de red") {
		t.Errorf("body %q lacks the TNEF body", m.Body)
	}
	if len(names) != 1 || names[0] != "oficio-solicitud-red.txt text/plain" {
		t.Errorf("archived %q, want the file inside winmail.dat only", names)
	}
}

// TestDecompressRTF: the example of [MS-OXRTFCP] section 3.1.1 decompresses to its RTF.
func TestDecompressRTF(t *testing.T) {
	comp := []byte{0x2d, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x4c, 0x5a, 0x46, 0x75, 0xf1, 0xc5, 0xc7, 0xa7,
		0x03, 0x00, 0x0a, 0x00, 0x72, 0x63, 0x70, 0x67, 0x31, 0x32, 0x35, 0x42, 0x32, 0x0a, 0xf3, 0x20,
		0x68, 0x65, 0x6c, 0x09, 0x00, 0x20, 0x62, 0x77, 0x05, 0xb0, 0x6c, 0x64, 0x7d, 0x0a, 0x80, 0x0f, 0xa0}
	out, err := decompressRTF(comp)
	if err != nil {
		t.Fatal(err)
	}
	const want = "{\\rtf1\\ansi\\ansicpg1252\\pard hello world}\r\n"
	if string(out) != want {
		t.Fatalf("got %q, want %q", out, want)
	}
	if got := strings.TrimSpace(rtfToText(out)); got != "hello world" {
		t.Errorf("text %q", got)
	}
}

func TestRTFToText(t *testing.T) {
	rtf := `{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 Arial;}}{\colortbl;\red0\green0\blue0;}` +
		`{\*\generator Riched20;}\pard Buenos d\'edas,\par la impresora no imprime \u241?\u8212-. ` +
		`{\*\htmltag84 <p>}\htmlrtf {\b bold}\htmlrtf0 Gracias\par}`
	got := rtfToText([]byte(rtf))
	want := "Buenos días,\nla impresora no imprime ñ—. Gracias\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
