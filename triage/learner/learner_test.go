package learner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/learner"
)

// quorvix is what the institute calls its videoconference platform, a name the default catalog
// has never heard of; agents keep re-routing its reports to VIDEOCONF.
func quorvix() []string {
	var out []string
	for _, f := range []string{"Quorvix no jala %s", "otra vez falla Quorvix %s", "Quorvix se traba %s",
		"no entra nadie a Quorvix %s", "Quorvix anda fatal %s"} {
		for _, when := range []string{"desde la mañana", "en la dirección", "con los alumnos"} {
			out = append(out, fmt.Sprintf(f, when))
		}
	}
	return out
}

const probe = "oigan, Quorvix no jala otra vez"

// publish records corrections on CAU_CORRECTIONS as the queues do when an agent re-routes (the
// JSON of queue.Correction).
func publish(t *testing.T, env *natstest.Env, texts []string, outcome, tipo, area string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, s := range texts {
		b, _ := json.Marshal(map[string]any{
			"id": fmt.Sprintf("req-%s-%d", area, i), "channel": "phone", "body": s, "outcome": outcome, "tipo": tipo, "area": area,
			"previous": map[string]string{"outcome": "aclaracion", "tipo": "-", "area": "-"}, "agent": "ana", "at": time.Now(),
		})
		if _, err := env.JS.Publish(ctx, natsjs.SubjectCorrections, b); err != nil {
			t.Fatal(err)
		}
	}
}

type replica struct {
	store *triage.Store
	l     *learner.Learner
	reg   *prometheus.Registry
}

// start runs one caud replica's learner on env: its own engine (default catalog), loading every
// promotion; train says whether it also retrains on its schedule.
func start(t *testing.T, env *natstest.Env, train bool, interval time.Duration) *replica {
	t.Helper()
	st, err := triage.NewStore("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	l, err := learner.New(ctx, learner.Options{
		JS: env.JS, Corrections: env.Corrections, Store: st, Train: train, Interval: interval, MinNew: 5, Registerer: reg,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &replica{store: st, l: l, reg: reg}
}

// attempts reads caud_triage_learn_attempts_total{result} from reg.
func attempts(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "caud_triage_learn_attempts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "result" && lp.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// waitFor polls cond until it holds; the deadline only bounds a failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRetrainTeachesANewPhrasingOnEveryReplica(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	a := start(t, env, false, time.Hour)
	b := start(t, env, false, time.Hour)
	before := a.store.Engine().Decide(triage.Input{Text: probe})
	if before.Area == "VIDEOCONF" {
		t.Fatalf("the default engine already knows Quorvix: %+v", before)
	}
	publish(t, env, quorvix(), triage.OutcomeSAI, triage.KindFalla, "VIDEOCONF")
	ctx := context.Background()
	att, err := a.l.Retrain(ctx)
	if err != nil || att.Result != learner.ResultPromoted || att.Candidate == "" {
		t.Fatalf("retrain: %v %+v", err, att)
	}
	if att.Report.HeldOut == 0 || att.Report.After.Rate <= att.Report.Before.Rate {
		t.Errorf("the candidate must beat the model in force on the held-out corrections: %+v", att.Report)
	}
	// The other replica loads the promotion without a restart.
	for _, r := range []*replica{a, b} {
		waitFor(t, "the promoted model on every replica", func() bool {
			return strings.HasSuffix(r.store.Engine().Version(), "+m."+att.Candidate)
		})
		after := r.store.Engine().Decide(triage.Input{Text: probe})
		if after.Outcome != triage.OutcomeSAI || after.Area != "VIDEOCONF" || !strings.HasSuffix(after.CatalogVersion, "+m."+att.Candidate) {
			t.Errorf("after the promotion: %+v", after)
		}
	}
	st := b.l.Status(ctx)
	if st.Current == nil || st.Current.Version != att.Candidate || st.Current.Corrections == 0 || st.Last == nil || st.Last.Result != learner.ResultPromoted {
		t.Errorf("status %+v", st)
	}
	if n := attempts(t, a.reg, learner.ResultPromoted); n != 1 {
		t.Errorf("promotions counted: %v", n)
	}
	// Nothing new: a second attempt trains the same candidate and does not promote it again.
	again, err := a.l.Retrain(ctx)
	if err != nil || again.Result == learner.ResultPromoted {
		t.Errorf("second retrain: %v %+v", err, again)
	}
}

func TestRetrainRefusesAContradictorySet(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	a := start(t, env, false, time.Hour)
	publish(t, env, quorvix(), triage.OutcomeSAI, triage.KindFalla, "VIDEOCONF")
	// The same texts, re-routed by other agents to another area.
	publish(t, env, quorvix()[:8], triage.OutcomeSAI, triage.KindFalla, "EQUIPO")
	version := a.store.Engine().Version()
	ctx := context.Background()
	att, err := a.l.Retrain(ctx)
	if err != nil || att.Result != learner.ResultContradictory || att.Report.Contradictory != 8 {
		t.Fatalf("retrain: %v %+v", err, att)
	}
	if !strings.Contains(att.Reason, "contradictorias") {
		t.Errorf("reason %q", att.Reason)
	}
	if a.store.Engine().Version() != version {
		t.Errorf("a refused set changed the engine: %s → %s", version, a.store.Engine().Version())
	}
	st := a.l.Status(ctx)
	if st.Current != nil || st.Last == nil || st.Last.Result != learner.ResultContradictory {
		t.Errorf("status %+v", st)
	}
	h := a.l.Health(ctx)
	if len(h) != 1 || !h[0].OK || !strings.Contains(h[0].Detail, "rechazado") {
		t.Errorf("health %+v", h)
	}
	if n := attempts(t, a.reg, learner.ResultContradictory); n != 1 {
		t.Errorf("refused attempts counted %v", n)
	}
}

// A set that is consistent but wrong (mail problems re-routed to scholarships) would teach the
// engine to be wrong on the catalog's own examples: not promoted.
func TestRetrainDoesNotPromoteAPoisonedSet(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	a := start(t, env, false, time.Hour)
	var texts []string
	for _, s := range []string{"no puedo entrar a mi correo institucional", "mi buzón de correo está lleno",
		"no me llegan los correos", "olvidé la contraseña de mi correo", "el correo me rebota los mensajes",
		"outlook no sincroniza mi correo", "no puedo enviar correos", "mi cuenta de correo está bloqueada"} {
		for _, f := range []string{"%s", "%s desde ayer", "buenas, %s", "%s, ¿qué hago?", "hola, %s desde el lunes",
			"oigan, %s", "%s otra vez", "buen día: %s, ¿me ayudan?", "%s, urge", "de nuevo %s", "%s en la oficina",
			"%s desde temprano", "%s y no sé por qué", "reporto que %s", "%s, gracias", "%s (otra vez)", "%s hoy",
			"%s desde hace una semana", "%s!!", "ayuda: %s"} {
			texts = append(texts, fmt.Sprintf(f, s))
		}
	}
	publish(t, env, texts, triage.OutcomeNoCompetente, "-", "BECAS")
	att, err := a.l.Retrain(context.Background())
	if err != nil || att.Result != learner.ResultNotPromoted {
		t.Fatalf("retrain: %v %+v", err, att)
	}
	if d := a.store.Engine().Decide(triage.Input{Text: "no puedo entrar a mi correo institucional"}); d.Area != "CORREO" {
		t.Errorf("the engine was degraded: %+v", d)
	}
}

// With the schedule on, enough new corrections start a retraining by themselves.
func TestScheduledRetrainPromotes(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	a := start(t, env, true, 50*time.Millisecond)
	publish(t, env, quorvix(), triage.OutcomeSAI, triage.KindFalla, "VIDEOCONF")
	waitFor(t, "a scheduled promotion", func() bool { return a.store.Engine().Model() != nil })
	if d := a.store.Engine().Decide(triage.Input{Text: probe}); d.Area != "VIDEOCONF" {
		t.Errorf("after the scheduled promotion: %+v", d)
	}
}
