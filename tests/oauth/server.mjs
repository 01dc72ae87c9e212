// oauth2-mock-server (npm) plus our SMART hook, for the SMART launch tests. Loopback only.
// Usage: node server.mjs <port>   -> prints "READY <issuer url>" when listening.
// Adds `iss` to authorization responses (RFC 9207). Adds to token responses: patient, encounter, need_patient_banner, smart_style_url, granted scope;
// adds fhirUser to the id_token; checks client authentication of registered clients
// (client_secret_basic, private_key_jwt RS384 + kid) and that refresh tokens were really issued.
// Test-only control routes: POST /test/context, POST /test/clients, GET /test/requests, POST /test/reset.
import { createPublicKey, verify } from 'node:crypto';
import { parse as parseBasic } from 'basic-auth';
import { OAuth2Server } from 'oauth2-mock-server';

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
const service = server.service;
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
let context = {};
let clients = {}; // client_id -> { secret } | { jwks }
let log = []; // what each /authorize and /token request carried (no secrets)
const codes = new Map(); // code -> authorize request query
const refreshScopes = new Map(); // issued refresh_token -> scope
const seenJti = new Set();

const json = (res, body, status = 200) => {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify(body));
};
const b64json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

service.addRoute('POST', '/test/context', (req, res) => { context = { ...req.body }; json(res, context); });
service.addRoute('POST', '/test/clients', (req, res) => { clients[req.body.client_id] = req.body; json(res, {}); });
service.addRoute('GET', '/test/requests', (req, res) => json(res, log));
service.addRoute('POST', '/test/reset', (req, res) => { context = {}; clients = {}; log = []; json(res, {}); });

service.on('beforeAuthorizeRedirect', (redirect, req) => {
  redirect.url.searchParams.set('iss', server.issuer.url); // RFC 9207 authorization response issuer
  const code = redirect.url.searchParams.get('code');
  if (code) codes.set(code, req.query);
  log.push({ endpoint: 'authorize', ...req.query });
});

// Returns [client_id, method] or throws a message.
function checkClient(req) {
  const body = req.body;
  const basic = parseBasic(req.headers.authorization ?? '');
  if (basic) {
    const c = clients[basic.name];
    if (c && c.secret !== basic.pass) throw new Error('wrong client secret');
    return [basic.name, 'client_secret_basic'];
  }
  if (body.client_assertion !== undefined) {
    if (body.client_assertion_type !== ASSERTION_TYPE) throw new Error('bad client_assertion_type');
    const [h, p, s] = String(body.client_assertion).split('.');
    const header = b64json(h);
    const claims = b64json(p);
    const c = clients[claims.iss];
    const now = Math.floor(Date.now() / 1000);
    if (header.alg !== 'RS384' || !header.kid) throw new Error('assertion must be RS384 with a kid');
    if (claims.iss !== claims.sub) throw new Error('assertion iss must equal sub');
    if (claims.aud !== `${server.issuer.url}/token`) throw new Error('assertion aud must be the token URL');
    if (!(claims.exp > now && claims.exp <= now + 305)) throw new Error('assertion exp must be within 5 min');
    if (!claims.jti || seenJti.has(claims.jti)) throw new Error('assertion jti missing or reused');
    seenJti.add(claims.jti);
    if (c) {
      const jwk = (c.jwks?.keys ?? []).find((k) => k.kid === header.kid);
      if (!jwk) throw new Error('unknown kid');
      const key = createPublicKey({ key: jwk, format: 'jwk' });
      if (!verify('sha384', Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'))) {
        throw new Error('bad assertion signature');
      }
    }
    return [claims.iss, 'private_key_jwt'];
  }
  if (clients[body.client_id]) throw new Error('this client must authenticate');
  return [body.client_id, 'none'];
}

service.on('beforeTokenSigning', (token, req) => {
  if ('scope' in token.payload) return; // the access token; below: the id_token
  if (context.fhirUser) token.payload.fhirUser = context.fhirUser;
  if (token.payload.aud === undefined && req.body.client_assertion) {
    token.payload.aud = b64json(String(req.body.client_assertion).split('.')[1]).iss;
  }
});

service.on('beforeResponse', (response, req) => {
  const body = req.body;
  const entry = { endpoint: 'token', grant_type: body.grant_type, has_code_verifier: 'code_verifier' in body };
  log.push(entry);
  let scope;
  try {
    [entry.client_id, entry.auth] = checkClient(req);
    if (body.grant_type === 'authorization_code') {
      scope = codes.get(body.code)?.scope;
      codes.delete(body.code);
    } else if (body.grant_type === 'refresh_token') {
      if (!refreshScopes.has(body.refresh_token)) throw new Error('unknown or used refresh_token');
      scope = refreshScopes.get(body.refresh_token);
      refreshScopes.delete(body.refresh_token);
    }
  } catch (err) {
    entry.error = err.message;
    response.statusCode = 401;
    response.body = { error: 'invalid_client', error_description: err.message };
    return;
  }
  if (response.statusCode !== 200) return;
  const granted = context.scope ?? scope ?? response.body.scope;
  Object.assign(response.body, { scope: granted });
  for (const k of ['patient', 'encounter', 'need_patient_banner', 'smart_style_url', 'fhirContext']) {
    if (context[k] !== undefined) response.body[k] = context[k];
  }
  if (context.expires_in !== undefined) response.body.expires_in = context.expires_in;
  if (response.body.refresh_token) refreshScopes.set(response.body.refresh_token, granted);
});

await server.start(Number(process.argv[2] ?? 0), '127.0.0.1');
server.issuer.url = `http://127.0.0.1:${server.address().port}`;
console.log(`READY ${server.issuer.url}`);
const stop = async () => { await server.stop(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
