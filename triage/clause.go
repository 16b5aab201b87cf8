package triage

import (
	"regexp"
	"strings"
)

// Clause-level reading. A request is split into clauses; each clause is classified from Spanish
// knowledge that belongs to the engine, not to a catalog: whether it states a malfunction, asks for
// something, asks whether a message is genuine, asks for the status of an earlier request, or says
// that something works. The clause's role sets the weight of its words: the main ask decides, a
// mention that only sets the scene weighs little, and a thing said to work almost nothing.

// Clause roles.
const (
	roleContext  = iota // sets the scene: no ask, no fault
	roleMain            // states a fault or asks for something
	roleWorks           // says that something works ("funciona bien", "ya quedó")
	roleReported        // the content of a suspicious message whose genuineness is asked about
	roleQuoted          // quoted or forwarded history
	roleMeta            // about the contact itself: "se cortó la llamada", "no dio su extensión"
)

// Clause weights: how much the words of a clause of each role count.
const (
	weightMain     = 1.0
	weightContext  = 0.5
	weightWorks    = 0.12
	weightReported = 0.3
	weightQuoted   = 0.3
	weightMeta     = 0.1
	// weightFocus is for a clause introduced by "el problema es", "lo que necesito es", ...
	weightFocus = 1.3
)

// clauseInfo is what the engine learned about one clause.
type clauseInfo struct {
	text     string // as written, trimmed, for explanations
	role     int
	weight   float64
	falla    float64 // strength of a malfunction statement
	serv     float64 // strength of a request, a question or a verification
	verify   bool    // "¿es real?", "¿es de ustedes?"
	status   bool    // status of an earlier request ("¿cómo va mi folio?")
	question bool
	focus    bool
	cue      string // the cue that set falla or serv, for explanations
	subject  bool
	report   bool // relays a received message ("me llegó un correo que dice ...")
	bare     bool // its request signal is only a question or an ask verb
	offer    int  // markers of a commercial offer ("somos una empresa", "precios especiales")
	ref      bool // names an earlier request (folio, reporte, ticket)
	stword   bool // asks where something stands ("¿en qué va?", "¿ya quedó?")
	history  bool // tells what the requester did before ("reporté", "levanté un reporte")
	nwords   int
	vague    bool // "no sabe cuál", "no sé qué es": the requester cannot tell
}

// readingWeight is what a clause counts for in reading falla vs servicio: its weight, halved when
// it quotes or relays someone else, and a little less in the subject line.
func (c clauseInfo) readingWeight() float64 {
	w := c.weight
	if c.role == roleQuoted || c.role == roleReported {
		w *= 0.5
	}
	if c.subject {
		w *= 0.8
	}
	return w
}

// Word classes of the built-in Spanish knowledge, on folded words. A trailing '*' matches a prefix.
var (
	negators = wordSet(`no ni nunca tampoco sin nadie ninguno ninguna`)
	// Clitics, auxiliaries and fillers that may sit between a negation and its verb ("no me deja",
	// "no lo puedo abrir", "no se puede conectar").
	fillers = wordSet(`me te se le les lo la nos mi su puedo puede pueden podemos pudo pude logro logra
		he ha han hemos habia quiere quieren quiso esta estan estaba sale salen da dan ya mas nada bien`)
	// Verbs of working: negated, they state a fault.
	workVerbs = wordSet(`funcion* sirv* sirve jala* anda andan abre abren abri* carg* enciend* prend* arranc*
		conect* entr* dej* imprim* escane* respond* reconoc* detect* lleg* recib* envi* mand* suen* escuch*
		guard* sincroniz* inici* ingres* acced* naveg* marc* actualiz* deja reproduc* proyect* suba sube subir
		descarg* responde muestr* aparec* cierr* valid* autentic* registr* enfri* func* activ* sac* agarr*
		lee detecta* jal* cargan disponible* autoriz* permit* funca anda andan camina sale salen gener* grab* resuelv*`)
	// Nouns that, lacked ("no hay señal", "sin internet", "no tengo tono"), state a fault.
	lackNouns = wordSet(`internet señal senal tono red conexion acceso imagen sonido audio linea servicio
		wifi luz video respuesta corriente`)
	lackVerbs = wordSet(`hay tengo tenemos tiene tienen tenia da dan`)
	// Words that state a malfunction by themselves, with their strength.
	faultWords = weightedSet(map[string]float64{
		"error*": 3, "falla*": 2.5, "fallo": 2.5, "fallan": 2.5, "caid*": 2.5, "cayo": 3, "cae": 2,
		"lent*": 2, "lentitud": 2, "traba*": 2.5, "trabad*": 2.5, "congel*": 2.5, "bloque*": 2.5,
		"expir*": 2.5, "vencid*": 2, "vencio": 2.5, "caduc*": 2.5, "rebot*": 3, "virus": 2.5,
		"infect*": 2.5, "malware": 2.5, "troyano": 2.5, "ransomware": 3, "dañad*": 2.5, "danad*": 2.5,
		"roto": 2, "rota": 2, "rompio": 2.5, "descompuest*": 3, "intermitent*": 2.5, "desconect*": 2,
		"reinici*": 1.5, "apaga": 1.5, "atasc*": 2.5, "atora*": 2, "atorad*": 2, "parpade*": 2,
		"incorrect*": 2, "invalid*": 2, "denegad*": 2.5, "forbidden": 3, "unavailable": 3, "timeout": 2.5,
		"pantallazo": 2.5, "rechaz*": 2.5, "arrugad*": 2, "mancha*": 2, "fatal": 2.5, "pesim*": 2.5,
		"horrible": 2, "inestable": 2.5, "parpadea": 2, "tildo": 2.5, "tilda": 2.5, "tildad*": 2.5, "fallid*": 2.5, "satura": 2.5, "satur*": 2, "excedid*": 2, "regresa": 1.5, "regresan": 1.5, "blanco": 1.5, "cargando": 1.5,
		"corta": 2, "cortan": 2,
		"colgad*": 2, "petado": 2.5, "peta": 2, "cuelga": 2, "mensaje de error": 0, "ruido": 1.5, "rayas": 2, "pegad*": 1.5, "lleno": 2, "llena": 2, "problema*": 1,
		"saturad*": 1.5, "hackea*": 2.5, "suspendid*": 1.5, "desconfigur*": 2.5, "borro": 1.5, "perdi": 1,
		"desaparec*": 2, "equivocad*": 2.5, "tarda": 1.5, "tardan": 1.5, "fuga": 1, "gotea": 1, "mal": 1, "raro": 1, "rara": 1,
		"403": 2, "404": 2, "500": 2, "502": 2, "503": 2,
	})
	// Verbs of asking, in the present or the conditional (a past "pedí" or "solicité" tells history).
	askVerbs = wordSet(`solicito solicitamos solicita solicitan requiero requerimos requiere requieren necesito
		necesitamos necesita necesitan ocupo ocupamos ocupa quiero quisiera queremos quisieramos pido pedimos
		pide piden podrian podria pueden puedes podes podrias puede agradeceria agradeceriamos gustaria
		favor apoyen apoyo ayuden ayudan ayudas ayuda urge deseo deseamos`)
	// Objects and verbs of something new, changed or given: a request for service.
	newWords = weightedSet(map[string]float64{
		"alta": 2.5, "crear": 2.5, "creacion": 2.5, "cree": 2, "creen": 2, "nuevo": 2, "nueva": 2,
		"nuevos": 2, "nuevas": 2, "instalar": 2.5, "instalacion": 2.5, "instalen": 2.5, "instalaran": 2.5,
		"instalarme": 2.5, "instalarlo": 2.5, "instalarla": 2.5, "instalaciones": 2,
		"configurar": 1.5, "configuracion": 1.5, "configuren": 1.5, "configurarme": 1.5, "reserv*": 3,
		"habilit*": 2.5, "publicar": 2.5, "publiquen": 2.5, "publique": 2.5, "publicacion": 2.5, "publicarlo": 2.5, "publicarla": 2.5, "asignar": 2.5, "asigne": 2.5, "asignen": 2.5, "asignacion": 2.5, "cambio": 2,
		"cambiar": 2, "cambien": 2, "cambiarme": 2, "cambiarlo": 2, "traslado": 2.5, "trasladar": 2.5,
		"trasladen": 2.5, "mover": 2, "reubicar": 2, "reubicacion": 2,
		"registrar": 1.5, "descargo": 2.5, "descargar": 2, "permiso*": 2, "licencia": 1, "apertura": 2.5,
		"restablecer": 2.5, "restablecimiento": 2.5, "restablezcan": 2.5, "reset": 2.5, "resetear": 2.5,
		"olvide": 2.5, "olvido": 2.5, "olvidaron": 2, "transmit*": 2.5,
		"transmision": 2.5, "liga": 1.5, "enlace": 1.5, "baja": 2, "prestamo": 2, "requisitos": 2.5,
		"informacion": 2, "informes": 2, "cotiz*": 2, "ampli*": 1.5, "agend*": 2.5, "inscrib*": 2,
		"otorg*": 2.5, "proporcion*": 1.5, "dar": 1.5, "den": 1.5, "incluy*": 1.5, "agreg*": 2,
		"renov*": 1, "actualizacion": 1, "capacitacion": 2, "curso*": 2, "asesoria": 2.5, "dictamen": 2.5,
		"visita": 2, "subdominio": 1.5, "obtengo": 2.5, "obtener": 2, "tramito": 2, "saco": 2,
	})
	// Question words that open a question about how, where or when (a request for information).
	questionWords = wordSet(`como donde cuando cual cuales quien quienes cuanto cuanta cuantos que hay existe
		tienen ofrecen dan puedo podemos debo`)
	// Verification questions: the ask is whether a message or a caller is genuine.
	verifyPairs = [][2]string{{"es", "real"}, {"es", "legitimo"}, {"es", "legitima"}, {"es", "verdad"},
		{"es", "oficial"}, {"es", "cierto"}, {"es", "fraude"}, {"es", "seguro"}, {"es", "confiable"},
		{"es", "phishing"}, {"es", "spam"}, {"es", "engano"}, {"es", "estafa"}, {"de", "ustedes"},
		{"sera", "real"}, {"ustedes", "enviaron"}, {"ustedes", "mandaron"}, {"es", "suyo"}, {"es", "verdadero"},
		{"es", "autentico"}, {"es", "valido"}}
	// Status of an earlier request: a reference and a question about where it stands.
	statusRefs  = wordSet(`folio* ticket* reporte* solicitud* caso peticion tramite seguimiento pedido`)
	statusWords = wordSet(`estatus status estado va avance seguimiento quedo paso atendieron atendio resolvieron
		resolvio revisaron reviso respuesta respondieron contestaron pendiente proceso cuando vieron checaron
		atienden`)
	// Clause openers that put the main ask after them.
	focusPairs = [][2]string{{"problema", "es"}, {"falla", "es"}, {"detalle", "es"}, {"pasa", "es"},
		{"necesito", "es"}, {"duda", "es"}, {"pregunta", "es"}, {"quiero", "saber"}, {"quisiera", "saber"},
		{"queria", "saber"}, {"solicitud", "es"}}
	// Said to work: "funciona bien", "sí funciona", "ya quedó".
	worksAfter  = wordSet(`bien correctamente normal normalmente perfecto perfectamente`)
	worksBefore = wordSet(`si ya`)
	worksVerbs  = wordSet(`funciona* sirve* jala anda andan conecta* entra carga* abre imprime* prende* enciende*
		quedo quedaron resolvi* solucion* esta estan llega llegan`)
	// Reporting a received message: "me llegó un correo que dice ...".
	reportNouns = wordSet(`correo mensaje mail email whatsapp sms llamada liga link enlace notificacion aviso`)
	reportVerbs = wordSet(`llego llegaron llega recibi recibimos dice decia pide pedia piden`)
)

// ableVerbs: "no puedo …", "no logro …" followed by an infinitive state that something fails.
var ableVerbs = wordSet(`puedo podemos puede pueden pudo pude pudimos logro logramos logra logran`)

// isInfinitive reports whether a folded word looks like a Spanish infinitive, with or without
// clitics ("entrar", "conectarme", "hacerlo").
func isInfinitive(w string) bool {
	for _, c := range []string{"", "me", "se", "lo", "la", "le", "nos", "los", "las"} {
		b, ok := strings.CutSuffix(w, c)
		if !ok || len(b) < 4 {
			continue
		}
		if strings.HasSuffix(b, "ar") || strings.HasSuffix(b, "er") || strings.HasSuffix(b, "ir") {
			return true
		}
	}
	return false
}

// wordSet builds a matcher from space-separated folded words; "x*" matches every word starting with x.
func wordSet(s string) *matcher {
	m := &matcher{exact: map[string]float64{}}
	for _, w := range strings.Fields(s) {
		m.add(w, 1)
	}
	return m
}

func weightedSet(ws map[string]float64) *matcher {
	m := &matcher{exact: map[string]float64{}}
	for w, v := range ws {
		m.add(w, v)
	}
	return m
}

type matcher struct {
	exact map[string]float64
	// prefixes by their first prefixHead bytes (shorter prefixes under "").
	heads map[string][]prefix
}

type prefix struct {
	p string
	v float64
}

const prefixHead = 3

func (m *matcher) add(w string, v float64) {
	if p, ok := strings.CutSuffix(w, "*"); ok {
		if m.heads == nil {
			m.heads = map[string][]prefix{}
		}
		h := ""
		if len(p) >= prefixHead {
			h = p[:prefixHead]
		}
		m.heads[h] = append(m.heads[h], prefix{p, v})
		return
	}
	m.exact[w] = v
}

// get returns the weight of w (0 when w is not in the set).
func (m *matcher) get(w string) float64 {
	if v, ok := m.exact[w]; ok {
		return v
	}
	if m.heads == nil {
		return 0
	}
	if len(w) >= prefixHead {
		for _, p := range m.heads[w[:prefixHead]] {
			if strings.HasPrefix(w, p.p) {
				return p.v
			}
		}
	}
	for _, p := range m.heads[""] {
		if strings.HasPrefix(w, p.p) {
			return p.v
		}
	}
	return 0
}

func (m *matcher) has(w string) bool { return m.get(w) > 0 }

// splitClauses cuts text into clauses at sentence punctuation, line breaks, colons and the
// adversative "pero" / "sin embargo", which often turn from context to the actual ask.
func splitClauses(text string, out []string) []string {
	start := 0
	cut := func(end int) {
		if t := strings.TrimSpace(text[start:end]); t != "" {
			out = append(out, t)
		}
	}
	for i := 0; i < len(text); i++ {
		switch c := text[i]; c {
		case '.', '!', ';', '\n', ':', '?':
			// Keep decimals and dotted names ("148.204.10.25", "outlook.office.com") together.
			if c == '.' && i+1 < len(text) && text[i+1] != ' ' && text[i+1] != '\n' && text[i+1] != '\r' {
				continue
			}
			if c == ':' && i+1 < len(text) && text[i+1] == '/' {
				continue
			}
			cut(i + 1)
			start = i + 1
		case ' ':
			// "funciona bien pero la pantalla está rota": "pero" turns to the ask even without a comma.
			if hasWordPrefix(text[i+1:], "pero") && i > start {
				cut(i + 1)
				start = i + 1
			}
		case ',':
			// "..., pero ..." and "..., sin embargo ..." start a new clause.
			rest := text[i+1:]
			if hasWordPrefix(rest, "pero") || hasWordPrefix(rest, "sin embargo") || hasWordPrefix(rest, "aunque") ||
				hasWordPrefix(rest, "el problema") || hasWordPrefix(rest, "lo que") {
				cut(i + 1)
				start = i + 1
			}
		}
	}
	cut(len(text))
	return out
}

func hasWordPrefix(s, w string) bool {
	s = strings.TrimLeft(s, " \t")
	if len(s) < len(w) || !strings.EqualFold(s[:len(w)], w) {
		return false
	}
	return len(s) == len(w) || !isWordRune(rune(s[len(w)]))
}

// classify reads one clause (its folded words ws) and fills the cue fields of ci.
func classify(ci *clauseInfo, ws []string) {
	ci.question = strings.HasSuffix(ci.text, "?") || strings.Contains(ci.text, "¿")
	best := func(v float64, cue string, serv bool) {
		if serv {
			if v > ci.serv {
				ci.serv, ci.cue = v, cue
			}
		} else if v > ci.falla {
			ci.falla = v
			if ci.falla >= ci.serv {
				ci.cue = cue
			}
		}
	}
	ask := false
	properNew := namesPlace(ci.text)
	for i, w := range ws {
		next := ""
		if i+1 < len(ws) {
			next = ws[i+1]
		}
		// Negated working verb, or a lacked noun: a fault.
		if negators.has(w) {
			for j := i + 1; j < len(ws) && j <= i+4; j++ {
				x := ws[j]
				if workVerbs.has(x) {
					best(3, w+" "+x, false)
					break
				}
				// "no puedo timbrar", "no logro conectarme": whatever the verb, it cannot be done.
				if ableVerbs.has(x) && j+1 < len(ws) && isInfinitive(ws[j+1]) {
					best(2.5, w+" "+x+" "+ws[j+1], false)
					break
				}
				if lackVerbs.has(x) {
					continue
				}
				if w == "sin" || j > i+1 && lackVerbs.has(ws[j-1]) {
					if lackNouns.has(x) {
						best(2.5, w+" "+x, false)
						break
					}
				}
				if !fillers.has(x) {
					break
				}
			}
		}
		// "ninguna extensión del piso tiene tono", "nadie puede conectarse"
		if w == "ninguna" || w == "ninguno" || w == "nadie" {
			for j := i + 1; j < len(ws) && j <= i+5; j++ {
				if workVerbs.has(ws[j]) || lackVerbs.has(ws[j]) && j+1 < len(ws) && lackNouns.has(ws[j+1]) {
					best(2.5, w+" … "+ws[j], false)
					break
				}
			}
		}
		// "el sistema me saca": it throws the user out.
		if (w == "saca" || w == "sacan" || w == "bota" || w == "tira") && i > 0 && ws[i-1] == "me" {
			best(2.5, "me "+w, false)
		}
		if (w == "dejo" || w == "deja" || w == "dejan" || w == "dejaron") && next == "de" {
			best(3, w+" de", false)
		}
		if w == "sigue" && (next == "sin" || next == "igual" || next == "fallando") {
			best(2.5, w+" "+next, false)
		}
		if v := faultWords.get(w); v > 0 {
			// "sin error" and "no hay error" deny the fault.
			if i > 0 && negators.has(ws[i-1]) {
				continue
			}
			best(v, w, false)
		}
		if askVerbs.has(w) {
			ask = true
		}
		if v := newWords.get(w); v > 0 && !(strings.HasPrefix(w, "nuev") && properNew) {
			// "no ha cambiado", "ya lo reinstalé": a denial or a step already tried, not an ask.
			if before(ws, i, 2, negators.has) || before(ws, i, 5, func(x string) bool { return x == "ya" || x == "habian" || x == "habia" }) {
				continue
			}
			best(v, w, true)
		}
		if worksVerbs.has(w) && (worksAfter.has(next) || before(ws, i, 3, worksBefore.has) && !before(ws, i, 3, negators.has)) {
			neg := i > 0 && negators.has(ws[i-1]) || i > 1 && negators.has(ws[i-2])
			if !neg {
				ci.role = roleWorks
			}
		}
		for _, p := range verifyPairs {
			if w == p[0] && next == p[1] {
				ci.verify = true
				best(3.5, w+" "+next, true)
			}
		}
		// "¿es de la DTI?", "¿esto es del instituto?"
		if ci.question && (w == "es" || w == "viene") && (next == "de" || next == "del") && i+2 >= len(ws)-2 {
			ci.verify = true
			best(3.5, w+" "+next, true)
		}
		for _, p := range focusPairs {
			if w == p[0] && next == p[1] {
				ci.focus = true
			}
		}
		if statusRefs.has(w) {
			// "¿y mi reporte?": a question about one's own earlier request.
			if ci.question && len(ws) <= 5 && i > 0 && (ws[i-1] == "mi" || ws[i-1] == "mis" || ws[i-1] == "nuestro" || ws[i-1] == "nuestra") {
				ci.status = true
				best(3, ws[i-1]+" "+w+"?", true)
			}
			for j := max(0, i-4); j < len(ws) && j <= i+5 && asksState(ci, ws); j++ {
				if statusWords.has(ws[j]) && ws[j] != w {
					ci.status = true
					best(3, w+" "+ws[j], true)
					break
				}
			}
		}
	}
	ci.offer = offerMarkers(ws)
	ci.nwords = len(ws)
	for _, w := range ws {
		ci.ref = ci.ref || statusRefs.has(w)
		ci.stword = ci.stword || statusWords.has(w)
	}
	ci.history = tellsHistory(ci.text)
	for i := 0; i+2 < len(ws); i++ {
		if ws[i] == "no" && (ws[i+1] == "sabe" || ws[i+1] == "se" || ws[i+1] == "sabemos" || ws[i+1] == "supo") {
			switch ws[i+2] {
			case "cual", "que", "explicar", "decir", "describir", "bien":
				ci.vague = true
			}
		}
	}
	if ci.serv == 0 {
		ci.bare = true // only a question or an ask verb, no object of a request
	}
	if ci.question && len(ws) > 0 && questionWords.has(ws[0]) {
		best(2, "¿"+ws[0]+"…?", true)
	}
	if ci.question && ci.falla == 0 {
		best(1.5, "pregunta", true)
	}
	if isMeta(ws) {
		ci.role = roleMeta
		ci.falla, ci.serv = 0, 0
		return
	}
	if ask {
		best(1, "petición", true)
	}
	// A status question is an ask even when the fault it followed is named in it.
	if ci.status {
		ci.falla /= 3
	}
	if ci.role == roleWorks && ci.falla > 0 && ci.serv == 0 {
		// "funciona bien pero se traba al guardar": the fault wins the clause.
		ci.role = roleContext
	}
	if ci.role == roleWorks {
		ci.falla, ci.serv = 0, 0
		return
	}
	if ci.falla > 0 || ci.serv > 0 || ci.focus || ask || ci.question {
		ci.role = roleMain
	}
}

// Place phrases. In "la fotocopiadora de la biblioteca no saca copias" or "en recursos humanos no
// hay internet" the office is only where the thing that fails is; what is wrong is with the thing.
// A word naming an orientation target's office (the catalog's office text) inside a place phrase
// counts placeWeight for the targets (never less for a CGSI service, and never a word of the matter:
// in "no me llegó el recibo de sueldo" the sueldo is what is asked about). A place phrase is opened
// by "en", or by "de"/"del" after a noun of a clause that states a malfunction; it runs up to
// placeSpan words and ends at a negation, "que" or another turn of the clause.
const (
	placeWeight = 0.35
	placeSpan   = 3
	// placeFault is the malfunction strength of a clause from which its "de" phrases are places.
	placeFault = 2.0
)

var (
	placeArticles = wordSet(`el la los las lo un una unos unas mi mis su sus tu tus nuestro nuestra nuestros nuestras
		este esta estos estas ese esa esos esas aquel aquella`)
	placeEnds = wordSet(`no ni que pero porque y o cuando donde si sin para por con desde ya nunca tampoco`)
)

// placeMask marks (true) the words of ws that are inside a place phrase; fault says whether the
// clause states a malfunction. It returns nil when there is none.
func placeMask(ws []string, fault bool, stop map[string]bool) []bool {
	var mask []bool
	content := false
	for i := 0; i < len(ws); i++ {
		w := ws[i]
		if w == "en" || fault && content && (w == "de" || w == "del") {
			j := i + 1
			for j < len(ws) && placeArticles.has(ws[j]) {
				j++
			}
			n := 0
			for ; j < len(ws) && n < placeSpan && !placeEnds.has(ws[j]); j++ {
				if ws[j] == "de" || ws[j] == "del" {
					continue // "de la biblioteca de la escuela"
				}
				if placeArticles.has(ws[j]) {
					if n > 0 && ws[j-1] != "de" && ws[j-1] != "del" {
						break // "en la biblioteca | la red está lenta": the subject begins
					}
					continue
				}
				if mask == nil {
					mask = make([]bool, len(ws))
				}
				mask[j] = true
				n++
			}
			i = j - 1
			continue
		}
		if !stop[w] {
			content = true
		}
	}
	return mask
}

// splitJoined undoes a negation written together with its verb, as in a hurried chat message
// ("noabre", "nomedeja", "nopuedo entrar"): "no", the clitic if any, and the verb become separate
// words when what follows "no" is a verb of working or of being able. ws is returned unchanged when
// there is nothing to split.
func splitJoined(ws []string) []string {
	var out []string
	for i, w := range ws {
		parts := joinedParts(w)
		if parts == nil {
			if out != nil {
				out = append(out, w)
			}
			continue
		}
		if out == nil {
			out = append(make([]string, 0, len(ws)+3), ws[:i]...)
		}
		out = append(out, parts...)
	}
	if out == nil {
		return ws
	}
	return out
}

func joinedParts(w string) []string {
	rest, ok := strings.CutPrefix(w, "no")
	if !ok || len(rest) < 3 {
		return nil
	}
	verb := func(v string) bool { return len(v) >= 3 && (workVerbs.has(v) || ableVerbs.has(v)) }
	if verb(rest) {
		return []string{"no", rest}
	}
	for _, c := range []string{"me", "se", "le", "lo", "la", "te", "nos"} {
		if v, ok := strings.CutPrefix(rest, c); ok && verb(v) {
			return []string{"no", c, v}
		}
	}
	return nil
}

// before reports whether one of the n words before ws[i] satisfies f.
func before(ws []string, i, n int, f func(string) bool) bool {
	for j := max(0, i-n); j < i; j++ {
		if f(ws[j]) {
			return true
		}
	}
	return false
}

// isMeta reports whether a clause is about the contact rather than the matter: an agent's note
// that the call dropped, or that the caller gave no data.
func isMeta(ws []string) bool {
	call, cut, fault := false, false, false
	for i, w := range ws {
		switch w {
		case "llamada", "comunicacion", "linea":
			call = true
		case "corto", "colgo", "termino", "cayo", "interrumpio", "cae", "corta":
			cut = true
		case "dar", "dio", "proporciono", "proporcionar", "indico", "quiso":
			if i > 0 && (ws[i-1] == "no" || ws[i-1] == "sin" || i > 1 && ws[i-2] == "antes") {
				return true
			}
		default:
			// "la imagen se congela y se cae la llamada": a fault of a call service, not a remark
			// about the agent's call.
			fault = fault || faultWords.get(w) > 0
		}
	}
	return call && cut && !fault
}

// properNewRe finds "nuevo"/"nueva" inside a proper name ("Villa Nueva", "Nuevo León"), written
// in mixed case; all-caps text tells nothing.
var properNewRe = regexp.MustCompile(`\p{Lu}\p{Ll}+\s+Nuev[oa]s?\b|\bNuev[oa]s?\s+\p{Lu}\p{Ll}+`)

// namesPlace reports whether every "nuevo"/"nueva" of a clause is part of a proper name: then
// none of them asks for something new.
func namesPlace(text string) bool {
	if !properNewRe.MatchString(text) {
		return false
	}
	rest := properNewRe.ReplaceAllString(text, "")
	return !strings.Contains(strings.ToLower(rest), "nuev")
}

// offerPairs mark a vendor's offer.
var offerPairs = [][2]string{{"somos", "una"}, {"precios", "especiales"}, {"propuesta", "comercial"},
	{"nuestros", "servicios"}, {"nuestro", "catalogo"}, {"nuestros", "productos"}, {"sin", "compromiso"},
	{"precio", "especial"}, {"descuento", "especial"}, {"presentarles", "nuestro"}, {"presentarles", "nuestra"},
	{"ofrecerles", "nuestros"}, {"empresa", "lider"}, {"somos", "distribuidores"}, {"somos", "proveedores"}}

var offerWords = wordSet(`ofrecemos ofrecerles cotizacion distribuidora distribuidor promocion publicidad
	marketing mayoreo oferta ofertas ofertamos vendemos comercializamos distribuimos mayorista descuento
	descuentos ahorro facturamos ventas precios`)

func offerMarkers(ws []string) int {
	n := 0
	for i, w := range ws {
		if offerWords.has(w) {
			n++
		}
		if i+1 < len(ws) {
			for _, p := range offerPairs {
				if w == p[0] && ws[i+1] == p[1] {
					n++
				}
			}
		}
	}
	return n
}

// asksState reports whether a clause asks (a question, or "quisiera saber", "me informen") rather
// than states: "el reporte del Sistema de Seguimiento marca error" is no status question.
func asksState(ci *clauseInfo, ws []string) bool {
	if ci.question {
		return true
	}
	for _, w := range ws {
		switch w {
		case "saber", "informar", "informen", "informe", "informacion", "indiquen", "indicar", "conocer",
			"pregunta", "preguntando", "pregunto", "preguntar", "consulta", "consultar":
			return true
		}
	}
	return false
}

// historyVerbs are first-person past forms of reporting (with their accent: "reporte" is also a noun).
var historyVerbs = []string{"reporté", "levanté", "solicité", "pedí", "envié", "mandé", "llamé", "hablé", "escribí", "reportamos", "solicitamos hace", "levantamos"}

// tellsHistory reports whether a clause tells what the requester did earlier.
func tellsHistory(text string) bool {
	l := strings.ToLower(text)
	for _, v := range historyVerbs {
		if strings.Contains(l, v) {
			return true
		}
	}
	return false
}

// isReport reports whether a clause relays a received message ("me llegó un correo que dice ...").
func isReport(ws []string) bool {
	noun, verb := false, false
	for _, w := range ws {
		noun = noun || reportNouns.has(w)
		verb = verb || reportVerbs.has(w)
	}
	return noun && verb
}

// weighClauses sets the weight of each clause from its role and from the roles of the others: a
// context clause weighs less only when some other clause carries the ask.
func weighClauses(cs clauseList) {
	markStatus(cs)
	anyMain, anyVerify := false, false
	for _, c := range cs {
		anyMain = anyMain || c.role == roleMain && !c.subject
		anyVerify = anyVerify || c.verify
	}
	focusNext := false
	for i := range cs {
		c := &cs[i]
		switch c.role {
		case roleMain:
			c.weight = weightMain
		case roleWorks:
			c.weight = weightWorks
		case roleQuoted:
			c.weight = weightQuoted
		case roleMeta:
			c.weight = weightMeta
		default:
			c.weight = 1
			if anyMain {
				c.weight = weightContext
			}
		}
		if anyVerify && !c.verify && c.role != roleWorks && c.report {
			c.role, c.weight = roleReported, weightReported
		}
		if focusNext && c.role != roleWorks {
			c.weight = weightFocus
		}
		focusNext = c.focus && !c.subject
		if c.focus && c.role != roleWorks {
			c.weight = weightFocus
		}
	}
	if cs.anyStatus() {
		// What the requester did before is the history of the status question, not a new ask.
		for k := range cs {
			if c := &cs[k]; c.history && !c.status && c.role == roleMain {
				c.weight = min(c.weight, weightContext)
				c.falla /= 2
			}
		}
	}
}

// markStatus finds status questions whose reference is in another clause.
func markStatus(cs clauseList) {
	// "¿En qué va?" after "me dieron el folio 1234": a status question whose reference is in
	// another clause.
	anyRef := false
	for _, c := range cs {
		anyRef = anyRef || c.ref && c.role != roleQuoted
	}
	for k := range cs {
		c := &cs[k]
		if !c.status && anyRef && c.question && c.stword && c.nwords <= 8 && c.role != roleQuoted {
			c.status, c.role = true, roleMain
			if c.serv < 3 {
				c.serv, c.cue = 3, "pregunta por el estado"
			}
			c.falla = 0
		}
	}
}
