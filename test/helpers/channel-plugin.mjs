export function hello(name) {
  return `hello ${name} from esm`;
}
export default { shout: (s) => String(s).toUpperCase() };
