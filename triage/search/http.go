package search

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/ipn-cgsi/caud/channels/httpjson"
)

// readyWait is how long a search waits for an index still loading before it answers 503.
const readyWait = 5 * time.Second

// Register adds GET /api/v1/requests to mux, wrapped by auth: the parameters of ParseQuery, the
// answer {"requests":[…Summary…],"next":"<cursor>"} (next absent on the last page); 400 with
// {"error":…,"fields":{…}} for unusable parameters; 503 while the index is loading.
func (x *Index) Register(mux *http.ServeMux, auth func(http.Handler) http.Handler) {
	mux.Handle("GET /api/v1/requests", auth(http.HandlerFunc(x.handleSearch)))
}

func (x *Index) handleSearch(w http.ResponseWriter, r *http.Request) {
	q, err := ParseQuery(r.URL.Query())
	if err != nil {
		var qe *QueryError
		if errors.As(err, &qe) {
			httpjson.Write(w, http.StatusBadRequest, httpjson.Error{Error: "la búsqueda tiene parámetros inválidos", Fields: qe.Fields})
			return
		}
		httpjson.Fail(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyWait)
	defer cancel()
	res, err := x.Search(ctx, q)
	if errors.Is(err, ErrNotReady) {
		w.Header().Set("Retry-After", "5")
		httpjson.Fail(w, http.StatusServiceUnavailable, "el índice de búsqueda se está cargando; intente en unos segundos")
		return
	}
	if err != nil {
		x.log.Error("search", "err", err)
		httpjson.Fail(w, http.StatusServiceUnavailable, "no se pudo buscar; intente de nuevo")
		return
	}
	httpjson.Write(w, http.StatusOK, res)
}
