// A shared dashboard link (/#m=…&status=…) comes here through a redirect
// that keeps its #fragment. Posting the form to /login#… keeps it once
// more: the redirect to "/" after logging in inherits the fragment, so the
// link opens the view it names.
const form = document.querySelector("form.login-form");
if (form && location.hash) form.action = "/login" + location.hash;
