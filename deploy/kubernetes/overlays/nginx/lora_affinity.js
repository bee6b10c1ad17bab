// The adapter an OpenAI request names in its JSON body ("model"), for
// nginx's consistent hash: every request for one adapter goes to the same
// replica, which keeps that adapter resident. Anything unparsable hashes as
// "" (one replica takes those; the request itself gets the server's 400).
function model(r) {
  try {
    const body = r.requestText;
    if (!body) return "";
    const j = JSON.parse(body);
    return typeof j.model === "string" ? j.model : "";
  } catch (e) {
    return "";
  }
}

export default { model };
