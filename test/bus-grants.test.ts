/** Bus grant strings: parsed strictly, each error naming what is wrong; coverage decided on parts, not text. */
import t from 'tap';

import { decideBusGrants, parseBusGrant, parseDeclarations } from '../lib/bus';
import { checkLevelCeiling } from '../lib/plugins/levels';
import { diffPermissions } from '../lib/scan';
import { RECOMMENDED_LEVELS } from '../lib/trust/levels';

t.test('grant strings are parsed strictly', async (t) => {
  t.same(parseBusGrant('events:publish:orders.created'), { kind: 'events:publish', topic: 'orders.created' });
  t.same(parseBusGrant('service:call:@acme/prices/quote'), { kind: 'service:call', plugin: '@acme/prices', service: 'quote' }, 'a scoped plugin name');
  t.same(parseBusGrant('data:read:@acme/prices/'), { kind: 'data:read', owner: '@acme/prices', prefix: '' }, 'the whole namespace');
  t.same(parseBusGrant('data:write:orders/inbox/'), { kind: 'data:write', owner: 'orders', prefix: 'inbox/' });
  for (const [bad, why] of [
    ['events:publish:*', /not a topic/],
    ['events:publish:', /not a topic/],
    ['events:publish:a/b', /not a topic/],
    ['events:listen:x', /is not a bus grant; use one of/],
    ['service:call:prices', /PLUGIN\/NAME/],
    ['service:call:Prices/quote', /valid plugin name/],
    ['service:call:prices/a/b', /not a service name/],
    ['data:read:orders/../x', /prefix/],
    ['data:read:orders//x', /prefix/],
    ['data:read:orders', /OWNER\/PREFIX/],
  ] as const) t.throws(() => parseBusGrant(bad), { message: why }, bad);
});

t.test('declarations and the trust entry: intersection, the missing one named', async (t) => {
  t.throws(() => parseDeclarations(['service:call:a/b'], 'provides'), { field: 'provides[0]', message: /belongs in `consumes`/ });
  t.throws(() => parseDeclarations('events:publish:x', 'provides'), { field: 'provides', message: /must be an array/ });
  const d = parseDeclarations(['data:read:orders/public/a', 'service:call:prices/quote'], 'consumes');
  t.same(decideBusGrants(d, ['data:write:orders/public/', 'service:call:prices/quote', 'fs:read:/srv']).missing, undefined, 'write covers read of a longer prefix; other permissions are ignored');
  t.equal(decideBusGrants(d, ['data:read:orders/public/a/b', 'service:call:prices/quote']).missing, 'data:read:orders/public/a', 'a narrower grant does not cover');
  t.equal(decideBusGrants(d, ['data:read:order/', 'service:call:prices/quote']).missing, 'data:read:orders/public/a', 'another owner whose name is a prefix does not cover');
  t.equal(decideBusGrants(parseDeclarations(['data:write:orders/x'], 'consumes'), ['data:read:orders/']).missing, 'data:write:orders/x', 'read does not cover write');
  t.match(decideBusGrants(d, ['events:publish:*']).malformed, { grant: 'events:publish:*', why: /not a topic/ }, 'a malformed grant in the trust list is reported, not skipped');
});

t.test('bus grants sit beside the host permissions: a level ceiling and the scan do not judge them', async (t) => {
  const grants = ['events:publish:orders.created', 'service:call:prices/quote', 'data:read:prices/'];
  // restricted allows no host permission at all, yet a bus grant is granted by name.
  t.doesNotThrow(() => checkLevelCeiling('orders', 'restricted', RECOMMENDED_LEVELS.restricted!, grants), 'restricted: bus grants only');
  t.throws(() => checkLevelCeiling('orders', 'restricted', RECOMMENDED_LEVELS.restricted!, [...grants, 'sys:exec']), { code: 'ERR_PLUGIN_LEVEL_CEILING' }, 'a host permission beside them is still judged');
  // No syntax shows a bus grant used or not: the scan does not call it unused.
  const d = diffPermissions(new Set(['net:outbound'] as const), [...grants, 'net:outbound', 'sys:exec']);
  t.same(d.requestedUnused, ['sys:exec'], 'only a host permission is called unused');
});
