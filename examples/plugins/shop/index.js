'use strict';
// On the bus: everything goes through the host, checked against shop's grants. It may call
// prices/quote, hear price.changed and read prices/public/...; nothing else of prices'.

exports.activate = async (host) => {
  // `from` is stamped by the host: the publisher's name, whatever the payload says.
  await host.subscribe('price.changed', (change, { from }) => host.log(`price.changed from ${from}: ${JSON.stringify(change)}`));
  host.hook('checkout', async (item) => {
    const quote = await host.callPlugin('prices', 'quote', item);
    const menu = await host.data.get('prices/public/menu');
    let internal;
    try {
      internal = await host.data.get('prices/internal/cost'); // not granted: the host refuses it
    } catch (e) {
      internal = { refused: e.code, message: e.message };
    }
    return { quote, menu, internal };
  });
};
