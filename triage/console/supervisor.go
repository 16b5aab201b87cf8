package console

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/ipn-cgsi/caud/channels/deadletter"
	"github.com/ipn-cgsi/caud/triage/queue"
)

// maxCorrections is how many of the latest corrections the supervisor page lists.
const maxCorrections = 50

type supervisorData struct {
	Checks      []Check
	Ready       bool
	Mailboxes   []Check
	Spool       []SpoolFailure
	SpoolErr    string
	Letters     []deadletter.Letter
	LettersErr  string
	Catalog     CatalogStatus
	Corrections []queue.Correction
	CorrErr     string
	Accounts    int
	UsersFile   string
	UsersErr    string
}

func (c *Console) supervisor(w http.ResponseWriter, r *http.Request, s *req) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	d := supervisorData{Ready: true, Accounts: c.o.Users.Count(), UsersFile: c.o.Users.Path()}
	if err := c.o.Users.Err(); err != nil {
		d.UsersErr = err.Error()
	}
	if c.o.Ready != nil {
		for _, ch := range c.o.Ready(ctx) {
			d.Ready = d.Ready && ch.OK
			if strings.HasPrefix(ch.Name, "imap") || strings.HasPrefix(ch.Name, "mailbox") || strings.Contains(ch.Name, "@") {
				d.Mailboxes = append(d.Mailboxes, ch)
			}
			d.Checks = append(d.Checks, ch)
		}
	}
	if c.o.SpoolFailures != nil {
		f, err := c.o.SpoolFailures()
		if err != nil {
			d.SpoolErr = "No se pudo leer la carpeta de fallidos: " + err.Error()
		}
		d.Spool = f
	}
	if c.o.DeadLetters != nil {
		l, err := c.o.DeadLetters.List(ctx, 0, 200)
		if err != nil {
			c.log.Error("console dead letters", "err", err)
			d.LettersErr = "No se pudieron leer las cartas muertas."
		}
		d.Letters = l
	}
	if c.o.Catalog != nil {
		d.Catalog = c.o.Catalog()
	} else {
		d.Catalog.Version = c.o.Engine().Catalog().Version()
	}
	var buf bytes.Buffer
	if _, err := c.o.Queues.Corrections(ctx, &buf); err != nil {
		c.log.Error("console corrections", "err", err)
		d.CorrErr = "No se pudieron leer las correcciones."
	}
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var cr queue.Correction
		if json.Unmarshal(sc.Bytes(), &cr) == nil {
			d.Corrections = append(d.Corrections, cr)
		}
	}
	slices.Reverse(d.Corrections)
	if len(d.Corrections) > maxCorrections {
		d.Corrections = d.Corrections[:maxCorrections]
	}
	c.render(w, r, s, http.StatusOK, "supervision", page{Title: "Supervisión", Nav: "supervision", Data: d})
}

func (c *Console) replay(w http.ResponseWriter, r *http.Request, s *req) {
	if c.o.DeadLetters == nil {
		c.fail(w, r, s, http.StatusNotFound, "No hay cartas muertas en este servidor.")
		return
	}
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		c.fail(w, r, s, http.StatusBadRequest, "Número de carta inválido.")
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	_, err = c.o.DeadLetters.Replay(ctx, seq)
	switch {
	case errors.Is(err, deadletter.ErrNotFound):
		c.fail(w, r, s, http.StatusNotFound, "Esa carta ya no existe (quizá otro supervisor la reenvió).")
	case errors.Is(err, deadletter.ErrNotReplayable):
		c.fail(w, r, s, http.StatusConflict, "Esa carta no se puede reenviar: no proviene de la entrada de solicitudes.")
	case err != nil:
		c.log.Error("console replay", "seq", seq, "err", err)
		c.fail(w, r, s, http.StatusServiceUnavailable, "No se pudo reenviar la carta; intente de nuevo.")
	default:
		c.log.Info("console replay", "user", s.User.Name, "seq", seq)
		http.Redirect(w, r, "/supervision?aviso=reenviada", http.StatusSeeOther)
	}
}
