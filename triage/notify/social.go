package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// socialClient talks to the Messenger Send API, the Graph API comment edge and the X API v2.
type socialClient struct {
	http            *http.Client
	fbBase, fbToken string
	xBase, xToken   string
}

// messenger sends a text message to a Page-scoped id: POST {base}/me/messages?access_token=…
// {"recipient":{"id":…},"messaging_type":"RESPONSE","message":{"text":…}}.
func (s *socialClient) messenger(ctx context.Context, psid, text string) error {
	body, _ := json.Marshal(map[string]any{
		"recipient":      map[string]string{"id": psid},
		"messaging_type": "RESPONSE",
		"message":        map[string]string{"text": text},
	})
	u := strings.TrimRight(s.fbBase, "/") + "/me/messages?access_token=" + url.QueryEscape(s.fbToken)
	return s.do(ctx, "facebook messenger", u, "application/json", body, "")
}

// comment replies to a Page comment: POST {base}/{comment-id}/comments with the form fields
// message and access_token.
func (s *socialClient) comment(ctx context.Context, commentID, text string) error {
	form := url.Values{"message": {text}, "access_token": {s.fbToken}}
	u := strings.TrimRight(s.fbBase, "/") + "/" + url.PathEscape(commentID) + "/comments"
	return s.do(ctx, "facebook comment", u, "application/x-www-form-urlencoded", []byte(form.Encode()), "")
}

// xDM sends a direct message: POST {base}/dm_conversations/with/{id}/messages {"text":…} with the
// bearer token.
func (s *socialClient) xDM(ctx context.Context, participant, text string) error {
	body, _ := json.Marshal(map[string]string{"text": text})
	u := strings.TrimRight(s.xBase, "/") + "/dm_conversations/with/" + url.PathEscape(participant) + "/messages"
	return s.do(ctx, "x dm", u, "application/json", body, "Bearer "+s.xToken)
}

// do posts and classifies the answer. Errors never include the URL (it may carry the token).
// Transient: network errors, 408, 429, 5xx, 401 and Graph's token and throttling codes (a token or
// quota problem is ours, not the notice's). Other 4xx are permanent (blocked user, closed
// messaging window, deleted comment).
func (s *socialClient) do(ctx context.Context, what, u, ctype string, body []byte, auth string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return permanent(fmt.Errorf("%s: build request: %v", what, redact(err)))
	}
	req.Header.Set("Content-Type", ctype)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return transient(fmt.Errorf("%s: %v", what, redact(err)))
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	var graph struct {
		Error struct {
			Message string `json:"message"`
			Code    int    `json:"code"`
		} `json:"error"`
		Detail string `json:"detail"`
		Title  string `json:"title"`
	}
	_ = json.Unmarshal(data, &graph)
	msg := firstNonEmpty(graph.Error.Message, graph.Detail, graph.Title, http.StatusText(resp.StatusCode))
	err = fmt.Errorf("%s: HTTP %d: %s", what, resp.StatusCode, msg)
	switch code := graph.Error.Code; {
	case resp.StatusCode == 408, resp.StatusCode == 429, resp.StatusCode >= 500, resp.StatusCode == 401:
		return transient(err)
	case code == 190 || code == 4 || code == 17 || code == 32 || code == 613 || code == 2:
		return transient(err)
	}
	return permanent(err)
}

func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
