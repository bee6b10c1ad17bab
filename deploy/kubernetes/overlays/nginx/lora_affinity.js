// The adapter an OpenAI request names in its JSON body, for nginx's
// consistent hash: "model" for completions and chat, "lora_name" for
// /v1/load_lora_adapter and /v1/unload_lora_adapter, so an adapter is
// loaded on the replica its requests will go to, and every request for one
// adapter lands there and finds it resident. Anything unparsable hashes as
// "" (one replica takes those; the request itself gets the server's 400).
function model(r) {
  try {
    const body = r.requestText;
    if (!body) return "";
    const j = JSON.parse(body);
    if (typeof j.model === "string") return j.model;
    return typeof j.lora_name === "string" ? j.lora_name : "";
  } catch (e) {
    return "";
  }
}

export default { model };
