package console

import (
	"fmt"
	"html/template"
	"math"
	"time"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/triage"
)

var channelLabels = map[string]string{
	channels.MediumEmail: "Correo electrónico", channels.MediumMemo: "Oficio escaneado", channels.MediumFacebook: "Facebook",
	channels.MediumX: "X (Twitter)", channels.MediumPhone: "Teléfono", channels.MediumInPerson: "En persona",
}

var roleLabels = map[string]string{
	channels.RoleDocente: "Docente", channels.RoleAdministrativo: "Administrativo", channels.RoleAlumno: "Alumno",
	channels.RoleOtro: "Otro",
}

var outcomeLabels = map[string]string{
	triage.OutcomeSAI: "SAI", triage.OutcomeInformativo: "Informativo", triage.OutcomeAclaracion: "Aclaración",
	triage.OutcomeNoCompetente: "No competente",
}

var kindLabels = map[string]string{triage.KindFalla: "Falla", triage.KindServicio: "Servicio (petición)"}

var stateLabels = map[string]string{
	natsjs.StateReceived: "Recibida", natsjs.StateQueued: "En cola", natsjs.StateClaimed: "En atención",
	natsjs.StateDone: "Terminada", natsjs.StateDead: "Fallida",
}

func label(m map[string]string) func(string) string {
	return func(s string) string {
		if l, ok := m[s]; ok {
			return l
		}
		if s == "" {
			return "—"
		}
		return s
	}
}

// age writes a duration the way an agent says it: "45 s", "12 min", "3 h 05 min", "2 d 4 h".
func age(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h %02d min", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%d d %d h", int(d.Hours())/24, int(d.Hours())%24)
	}
}

func (c *Console) funcs() template.FuncMap {
	return template.FuncMap{
		"canal":     label(channelLabels),
		"rol":       label(roleLabels),
		"resultado": label(outcomeLabels),
		"tipo":      label(kindLabels),
		"estado":    label(stateLabels),
		"cola":      label(queueLabels),
		"evento":    label(historyLabels),
		"fecha": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.In(c.loc).Format("02/01/2006 15:04:05")
		},
		"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"pct": func(f float64) string { return fmt.Sprintf("%d %%", int(math.Round(f*100))) },
		"hace": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return "hace " + age(c.o.Now().Sub(t))
		},
		"restante": func(t time.Time) string { return age(time.Until(t)) },
		"deref": func(p *string) string {
			if p == nil {
				return ""
			}
			return *p
		},
		"kb": func(n int64) string {
			if n < 1024 {
				return fmt.Sprintf("%d B", n)
			}
			if n < 1<<20 {
				return fmt.Sprintf("%.1f KB", float64(n)/1024)
			}
			return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
		},
	}
}
