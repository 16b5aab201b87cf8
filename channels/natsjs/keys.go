package natsjs

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// RequestKey is a key of KV cau_requests. This file owns the keyspace; every package that reads or
// writes the bucket builds its keys here:
//
//	<request id>              the request's index entry (RequestState), see StateKey
//	received.<request id>     the intake's note that the request arrived, see ReceivedKey
//	mid.<sha256>              a Message-ID (of a mail taken in, or of a notice sent) → request id
//	mid.raw-<sha256>          a mail without Message-ID, by its bytes → request id
//	idem.desk.<hash>          a desk client's idempotency key → the request it created
//	social.<platform>.<hash>  a platform message id that was already published
type RequestKey string

// String returns the key as the KV API takes it.
func (k RequestKey) String() string { return string(k) }

// StateKey is the key of a request's index entry: the request id itself.
func StateKey(requestID string) RequestKey { return RequestKey(requestID) }

// ReceivedKey is the key of the intake's "received" note of a request (see state.go).
func ReceivedKey(requestID string) RequestKey { return RequestKey("received." + requestID) }

// NormalizeMessageID is the form a Message-ID is compared and hashed in: no angle brackets, no
// blanks, lowercased.
func NormalizeMessageID(id string) string {
	id = strings.TrimSpace(id)
	id = strings.TrimPrefix(id, "<")
	id = strings.TrimSuffix(id, ">")
	return strings.ToLower(strings.Join(strings.Fields(id), ""))
}

// MessageIDKey is the key under which a Message-ID is indexed: "mid." and the hex SHA-256 of the
// normalized id. Mail taken in and notices sent use the same key, so a reply finds its request.
func MessageIDKey(messageID string) RequestKey {
	sum := sha256.Sum256([]byte(NormalizeMessageID(messageID)))
	return RequestKey("mid." + hex.EncodeToString(sum[:]))
}

// RawMailKey indexes a mail without a Message-ID by the SHA-256 of its bytes (a server keeps them
// identical across a UIDVALIDITY change, so a rescan finds it).
func RawMailKey(raw []byte) RequestKey {
	sum := sha256.Sum256(raw)
	return RequestKey("mid.raw-" + hex.EncodeToString(sum[:]))
}

// ShortHash is the hex of the first 16 bytes of the SHA-256 of s: the hash used in desk and social
// keys and in their Nats-Msg-Ids.
func ShortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// DeskIdempotencyKey is the key of a desk client's idempotency key.
func DeskIdempotencyKey(clientKey string) RequestKey {
	return RequestKey("idem.desk." + ShortHash(clientKey))
}

// SocialKey claims a platform's message id before its request is published (the record holds the
// request) and then records it published (the record names the request and its sequence).
func SocialKey(platform, messageID string) RequestKey {
	return RequestKey("social." + platform + "." + ShortHash(messageID))
}
