import { SaxesParser } from "saxes";

/** A namespace-resolved tree, independent of prefixes and declarations, for comparisons. */
export type Tree = { el: string; attrs: Record<string, string>; children: (Tree | string)[] };

/** Reads XML independently of the code under test; adjacent text and CDATA merge. */
export function tree(xml: string): Tree {
  const parser = new SaxesParser({ xmlns: true });
  const stack: Tree[] = [{ el: "#root", attrs: {}, children: [] }];
  const add = (node: Tree | string) => {
    const parent = stack[stack.length - 1]!;
    const last = parent.children[parent.children.length - 1];
    if (typeof node === "string" && typeof last === "string") {
      parent.children[parent.children.length - 1] = last + node;
    } else if (node !== "") parent.children.push(node);
  };
  parser.on("opentag", (tag) => {
    const attrs: Record<string, string> = {};
    for (const a of Object.values(tag.attributes)) {
      if (a.uri !== "http://www.w3.org/2000/xmlns/") attrs[`{${a.uri}}${a.local}`] = a.value;
    }
    const node: Tree = { el: `{${tag.uri}}${tag.local}`, attrs, children: [] };
    add(node);
    stack.push(node);
  });
  parser.on("closetag", () => void stack.pop());
  parser.on("text", add);
  parser.on("cdata", add);
  parser.write(xml).close();
  return stack[0]!.children[0] as Tree;
}
