'use strict';
// On the bus: answers quote calls, publishes price.changed, keeps data in its own namespace
// (prices/...: no grant needed for its own keys). public/ is for others to read; internal/ is not.
const menu = { tea: 350, coffee: 420 };

exports.activate = async (host) => {
  await host.data.set('prices/public/menu', menu);
  await host.data.set('prices/internal/cost', { tea: 90, coffee: 110 });
  // this.caller is the calling plugin's name as the host knows it, not anything the caller sent.
  await host.provide('quote', function (item) {
    return { item, cents: menu[item], caller: this.caller };
  });
  // The application changes a price; the subscribers hear of it from the host.
  host.hook('reprice', async (item, cents) => {
    menu[item] = cents;
    await host.data.set('prices/public/menu', menu);
    return host.publish('price.changed', { item, cents }); // resolves to the subscribers reached
  });
};
