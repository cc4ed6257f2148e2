exports.add = (a, b) => a + b;
exports.size = (b) => b.length;
