package sandbox

import (
	"net/url"
)

// Simulated replies: some recipients answer a delivered message, as people
// do, and Plivo posts the reply to the application's message URL (which
// the tutorial sets to the callback URL, as the sandbox does). The second
// reply of a run is always a STOP, so within the first few sends the
// dashboard shows an inbound message, an opt-out, and a later send to that
// number refused with 409.

// defaultReplyShare is the share of delivered messages that get a reply
// when Options.ReplyShare is 0: a few per hundred.
const defaultReplyShare = 0.04

// reply is one simulated answer: its text and Plivo's MessageIntent.
type reply struct{ text, intent string }

// firstReplies are the first replies of a run, sent to the first delivered
// messages so the flow shows at once; later replies cycle through
// laterReplies.
var (
	firstReplies = []reply{{"Thanks, got it 👍", ""}, {"STOP", "optout"}}
	laterReplies = []reply{
		{"Who is this?", ""}, {"HELP", "help"}, {"ok", ""}, {"Can I change my appointment to Friday?", ""}, {"STOP", "optout"},
	}
)

// replyState is the sandbox's record of replies; guarded by Sandbox.mu.
type replyState struct {
	delivered int // delivered messages so far
	sent      int // replies so far
	// credit accumulates the reply share per delivered message; a reply is
	// due each time it reaches 1, so the share is exact over a run.
	credit float64
}

// nextReplyLocked decides whether the message just delivered gets a reply.
func (sb *Sandbox) nextReplyLocked() (reply, bool) {
	share := sb.opts.ReplyShare
	if share < 0 {
		return reply{}, false
	}
	if share == 0 {
		share = defaultReplyShare
	}
	st := &sb.replies
	st.delivered++
	var r reply
	switch {
	case st.sent < len(firstReplies):
		r = firstReplies[st.sent]
	default:
		if st.credit += share; st.credit < 1 {
			return reply{}, false
		}
		st.credit--
		r = laterReplies[(st.sent-len(firstReplies))%len(laterReplies)]
	}
	st.sent++
	return r, true
}

// maybeReply posts a reply from m's recipient, one Step after m was
// delivered, when one is due.
func (sb *Sandbox) maybeReply(m *message) {
	if sb.opts.NoCallbacks || m.callbackURL == "" {
		return
	}
	sb.mu.Lock()
	r, ok := sb.nextReplyLocked()
	sb.mu.Unlock()
	if !ok {
		return
	}
	in := &message{UUID: newMessageUUID(), From: m.To, To: m.From, Type: "sms", callbackURL: m.callbackURL, cbMethod: m.cbMethod}
	if !sb.sleep(sb.opts.Step) {
		return
	}
	sb.log.Info("sandbox reply", "from", in.From, "text", r.text)
	sb.post(in, inboundParams(in, r))
}

// inboundParams are the fields Plivo posts for an inbound SMS.
func inboundParams(in *message, r reply) url.Values {
	p := url.Values{}
	p.Set("MessageUUID", in.UUID)
	p.Set("From", in.From)
	p.Set("To", in.To)
	p.Set("Text", r.text)
	p.Set("Type", "sms")
	p.Set("Units", "1")
	p.Set("TotalRate", "0.00000")
	p.Set("TotalAmount", "0.00000")
	p.Set("MessageIntent", r.intent)
	p.Set("PowerpackUUID", "")
	return p
}
