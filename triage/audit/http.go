package audit

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/httpjson"
)

// Register adds GET /api/v1/requests/{id}/history to mux, wrapped by auth. It answers
// {"request_id":"…","history":[…Event…]}, 404 for an id that is no request id, 503 when JetStream
// cannot be read. log may be nil.
func (t *Trail) Register(mux *http.ServeMux, auth func(http.Handler) http.Handler, log *slog.Logger) {
	log = channels.OrDiscard(log)
	mux.Handle("GET /api/v1/requests/{id}/history", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		id := r.PathValue("id")
		h, err := t.History(ctx, id)
		switch {
		case errors.Is(err, ErrUnknownRequest):
			httpjson.Fail(w, http.StatusNotFound, "no existe una solicitud con ese id")
		case err != nil:
			log.Error("read history", "id", id, "err", err)
			httpjson.Fail(w, http.StatusServiceUnavailable, "no se pudo leer el historial; intente de nuevo")
		default:
			httpjson.Write(w, http.StatusOK, map[string]any{"request_id": id, "history": h})
		}
	})))
}
